"""Migration keys: the SML's format rule, generation, masking, and encryption at rest.

The rule is BDMSL's since v1.01 (peppol-commons ``CSMLDefault.MIGRATION_CODE_PATTERN``):
8-24 characters, at least 2 upper, 2 lower, 2 digits and 2 specials, no white space.
peppol-commons' regex also admits ``_`` as a special, but the real SMK's ERR-106 text
lists ``@#$%()[]{}*^-!~|+=`` without it, so we refuse ``_`` as a special (it is still
allowed as an extra character: the SML does not forbid it, it just does not count).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import string

from cryptography.fernet import Fernet, InvalidToken

from migration_engine.errors import SecretError

SPECIALS = "@#$%()[]{}*^-!~|+="
MIN_LENGTH = 8
MAX_LENGTH = 24

_SPECIAL_CLASS = re.escape(SPECIALS)
KEY_PATTERN = re.compile(
    r"^(?=.{8,24}$)"
    rf"(?=(?:.*[{_SPECIAL_CLASS}]){{2,}})"
    r"(?=(?:.*[A-Z]){2})(?=(?:.*[a-z]){2})(?=(?:.*[0-9]){2})(?=\S+$).*$",
    re.DOTALL,
)


def key_problem(key: str) -> str | None:
    """Why ``key`` breaks the SML rule, or None when it is valid. Never echoes the key."""
    if not key:
        return "the migration key is empty"
    if any(ch.isspace() for ch in key):
        return "the migration key contains white space"
    if len(key) < MIN_LENGTH:
        return f"the migration key has {len(key)} characters; the SML needs at least {MIN_LENGTH}"
    if len(key) > MAX_LENGTH:
        return f"the migration key has {len(key)} characters; the SML allows at most {MAX_LENGTH}"
    counts = {
        "upper-case letters": sum(ch.isascii() and ch.isupper() for ch in key),
        "lower-case letters": sum(ch.isascii() and ch.islower() for ch in key),
        "digits": sum(ch.isascii() and ch.isdigit() for ch in key),
        f"special characters from {SPECIALS}": sum(ch in SPECIALS for ch in key),
    }
    missing = [f"{name} (has {n})" for name, n in counts.items() if n < 2]
    if missing:
        return "the migration key needs at least 2 " + ", 2 ".join(missing)
    if not KEY_PATTERN.match(key):  # pragma: no cover - the checks above mirror the regex
        return "the migration key does not match the SML's rule"
    return None


def is_valid_key(key: str) -> bool:
    return key_problem(key) is None


def generate_key(length: int = MAX_LENGTH) -> str:
    """A random key the SML accepts, built like peppol-commons' ``createRandomMigrationKey``.

    The first eight characters cycle lower, upper, digit, special so every class appears
    twice; the rest are drawn from all four classes.
    """
    if not MIN_LENGTH <= length <= MAX_LENGTH:
        raise ValueError(f"a key has {MIN_LENGTH}-{MAX_LENGTH} characters")
    classes = (string.ascii_lowercase, string.ascii_uppercase, string.digits, SPECIALS)
    chars = [secrets.choice(classes[i % 4]) for i in range(MIN_LENGTH)]
    everything = "".join(classes)
    chars += [secrets.choice(everything) for _ in range(length - MIN_LENGTH)]
    return "".join(chars)


def mask(key: str | None) -> str:
    """How a key may appear anywhere a person can read it: ``11…$$`` at most.

    Short keys show nothing but their length class, so no more than 4 characters of any
    key are ever shown.
    """
    if not key:
        return ""
    if len(key) < 12:
        return "…" * 3
    return f"{key[:2]}…{key[-2:]}"


class KeyVault:
    """Encrypts migration keys at rest with a key-encryption key from the environment.

    Any secret string of at least 16 characters works; it is stretched to a Fernet key with
    SHA-256, so operators can use a passphrase or ``openssl rand -base64 32`` alike.
    """

    def __init__(self, secret: str | None) -> None:
        if not secret:
            raise SecretError(
                "no key-encryption key: set PEPPOL_MIGRATE_KEYS__ENCRYPTION_KEY "
                "(at least 16 characters) so migration keys can be stored encrypted"
            )
        if len(secret) < 16:
            raise SecretError(
                "the key-encryption key (PEPPOL_MIGRATE_KEYS__ENCRYPTION_KEY) is shorter than 16 characters"
            )
        derived = hashlib.sha256(b"peppol-migrate/kek/v1\0" + secret.encode("utf-8")).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def encrypt(self, key: str) -> str:
        return self._fernet.encrypt(key.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, ValueError) as exc:
            raise SecretError(
                "a stored migration key cannot be decrypted: PEPPOL_MIGRATE_KEYS__ENCRYPTION_KEY is not the "
                "key these migrations were stored with"
            ) from exc
