"""Migration keys: the SML's format rule, generation, masking, and encryption at rest.

The rule is BDMSL's since v1.01 (peppol-commons ``CSMLDefault.MIGRATION_CODE_PATTERN``):
8-24 characters, at least 2 upper, 2 lower, 2 digits and 2 specials, no white space.
peppol-commons' regex also admits ``_`` as a special, but the real SMK's ERR-106 text
lists ``@#$%()[]{}*^-!~|+=`` without it, so we refuse ``_`` as a special (it is still
allowed as an extra character: the SML does not forbid it, it just does not count).

Keys at rest (docs/operations.md, "Keys at rest"): AES-256-GCM under a key-encryption key,
each ciphertext bound to its migration (id and party id as associated data) and tagged with
the id of the key that sealed it: ``v2:<key id>:<base64url(nonce | ciphertext | tag)>``.
The key-encryption key is a 32-byte random key in base64 (``openssl rand -base64 32``), used
as is, or a passphrase stretched with scrypt; HKDF separates the encryption key from the key
of the check value the database keeps (``KeyRecord``), against which every command that
encrypts or decrypts checks the configured key first. ``v1`` (Fernet, from before) is still
read, with the same setting; ``keys rotate`` rewrites it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from migration_engine.errors import SecretError, StoredKeyUnreadable

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


# ---- keys at rest -----------------------------------------------------------------------

KEY_SETTING = "PEPPOL_MIGRATE_KEYS__ENCRYPTION_KEY"
NEW_KEY_SETTING = "PEPPOL_MIGRATE_KEYS__NEW_ENCRYPTION_KEY"
RAW = "raw"  # a 32-byte random key in base64, used as is
SCRYPT = "scrypt"  # anything else: a passphrase, stretched with scrypt
MIN_PASSPHRASE = 16
MIN_DISTINCT = 8  # characters of a passphrase ("aaaaaaaaaaaaaaaa" has 1)
_MIN_DISTINCT_BYTES = 16  # of a raw key: 32 random bytes have about 30 distinct values
_V2 = "v2"
_NONCE = 12
_B64_KEY = re.compile(r"^[A-Za-z0-9+/_-]{43}=?$")
_LEGACY_CONTEXT = b"peppol-migrate/kek/v1\0"


@dataclass(frozen=True)
class ScryptParams:
    """scrypt's cost for a passphrase. The default (n=2**17, r=8, p=1: 128 MiB, about 0.2 s) is
    OWASP's recommendation for scrypt; a command pays it once, when it opens the vault. The
    parameters used are stored with the key, so a later default does not lock out old keys."""

    n: int = 2**17
    r: int = 8
    p: int = 1


DEFAULT_SCRYPT = ScryptParams()


@dataclass(frozen=True)
class KeyRecord:
    """What the database keeps of a key-encryption key: never the key, only how to derive it
    again (KDF, salt, scrypt's cost) and a check value that tells whether a key is the one."""

    key_id: str
    kdf: str  # RAW or SCRYPT
    salt: bytes
    check_value: str  # hex HMAC-SHA256 of the key id under the key's check key
    scrypt: ScryptParams | None = None  # SCRYPT only


def raw_key(secret: str) -> bytes | None:
    """The 32 bytes of a key given in base64 (standard or URL-safe, padding optional), or
    None when ``secret`` is not one (then it is a passphrase)."""
    text = secret.strip()
    if not _B64_KEY.match(text):
        return None
    try:
        data = base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_").rstrip("=") + "=")
    except (binascii.Error, ValueError):
        return None
    return data if len(data) == 32 else None


def _form(kdf: str) -> str:
    return "a 32-byte base64 key" if kdf == RAW else "a passphrase"


def secret_problem(secret: str | None, *, setting: str = KEY_SETTING) -> str | None:
    """Why ``secret`` is no key-encryption key, or None. Never echoes it."""
    advice = "make one with `openssl rand -base64 32`"
    if not secret:
        return f"no key-encryption key: set {setting} so migration keys can be stored encrypted ({advice})"
    raw = raw_key(secret)
    if raw is not None:
        if len(set(raw)) < _MIN_DISTINCT_BYTES:
            return f"{setting} decodes to 32 bytes that are not random ({len(set(raw))} distinct values); {advice}"
        return None
    if len(secret) < MIN_PASSPHRASE:
        return (
            f"{setting} is a passphrase of {len(secret)} characters; a passphrase needs at least "
            f"{MIN_PASSPHRASE} (better: a 32-byte random key; {advice})"
        )
    distinct = len(set(secret))
    if distinct < MIN_DISTINCT:
        return (
            f"{setting} is a passphrase of only {distinct} distinct characters; a passphrase needs at least "
            f"{MIN_DISTINCT} (better: a 32-byte random key; {advice})"
        )
    return None


def _hkdf(master: bytes, salt: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"peppol-migrate/" + purpose).derive(master)


def _check_value(check_key: bytes, key_id: str) -> str:
    return hmac.new(check_key, b"peppol-migrate key check\0" + key_id.encode("ascii"), hashlib.sha256).hexdigest()


def _associated_data(key_id: str, migration_id: int, party_id: str) -> bytes:
    return f"peppol-migrate/{_V2}\0{key_id}\0{migration_id}\0{party_id}".encode()


def key_id_of(token: str) -> str | None:
    """The id of the key that sealed a ``v2`` ciphertext; None for a ``v1`` (Fernet) one."""
    if not token.startswith(_V2 + ":"):
        return None
    return token.split(":", 2)[1]


class KeyVault:
    """Encrypts migration keys at rest under a key-encryption key from the environment.

    ``KeyVault(secret)`` makes a new ``record`` (fresh key id and salt) for the database to
    keep; ``KeyVault(secret, record=stored)`` checks ``secret`` against a stored record and
    refuses (``SecretError``, naming ``setting``) a key that is not the one. ``scrypt`` is the
    cost of a new passphrase's record (tests pass a cheap one; an opened record brings its own).
    ``allow_weak``: a short passphrase is accepted (only as the old key of ``keys rotate``).
    """

    def __init__(
        self,
        secret: str | None,
        *,
        record: KeyRecord | None = None,
        scrypt: ScryptParams = DEFAULT_SCRYPT,
        setting: str = KEY_SETTING,
        allow_weak: bool = False,
    ) -> None:
        problem = secret_problem(secret, setting=setting)
        if not secret or (problem and not allow_weak):
            raise SecretError(problem or f"{setting} is not set")
        self.setting = setting
        raw = raw_key(secret)
        kdf = RAW if raw is not None else SCRYPT
        legacy = hashlib.sha256(_LEGACY_CONTEXT + secret.encode("utf-8", "surrogateescape")).digest()
        self._legacy = Fernet(base64.urlsafe_b64encode(legacy))  # reads v1 ciphertexts
        if record is None:
            record = KeyRecord(
                key_id=secrets.token_hex(4),
                kdf=kdf,
                salt=secrets.token_bytes(16),
                check_value="",
                scrypt=None if kdf == RAW else scrypt,
            )
        elif record.kdf != kdf:
            raise SecretError(
                f"{setting} is not the key-encryption key the stored migration keys were sealed with: it is "
                f"{_form(kdf)}, they were sealed with {_form(record.kdf)} (key id {record.key_id})"
            )
        if raw is not None:
            master = raw
        else:
            cost = record.scrypt or scrypt
            master = Scrypt(salt=record.salt, length=32, n=cost.n, r=cost.r, p=cost.p).derive(
                secret.encode("utf-8", "surrogateescape")
            )
        check = _check_value(_hkdf(master, record.salt, b"check/v2"), record.key_id)
        if not record.check_value:
            record = KeyRecord(record.key_id, record.kdf, record.salt, check, record.scrypt)
        elif not hmac.compare_digest(check, record.check_value):
            raise SecretError(
                f"{setting} is not the key-encryption key the stored migration keys were sealed with (key id "
                f"{record.key_id}: its check value does not match); set the key they were stored with "
                "(`peppol-migrate keys rotate` changes it)"
            )
        self.record = record
        self._aead = AESGCM(_hkdf(master, record.salt, b"aes-256-gcm/v2"))

    @property
    def key_id(self) -> str:
        return self.record.key_id

    def seals(self, token: str) -> bool:
        """Whether ``token`` was sealed by this vault's key (a ``v2`` ciphertext with its key id)."""
        return key_id_of(token) == self.key_id

    def encrypt(self, key: str, *, migration_id: int, party_id: str) -> str:
        """``key`` sealed for one migration: it opens only with the same migration id and party id."""
        nonce = secrets.token_bytes(_NONCE)
        sealed = self._aead.encrypt(nonce, key.encode("utf-8"), _associated_data(self.key_id, migration_id, party_id))
        return f"{_V2}:{self.key_id}:{base64.urlsafe_b64encode(nonce + sealed).decode('ascii')}"

    def decrypt(self, token: str, *, migration_id: int, party_id: str) -> str:
        """The key sealed in ``token`` for this migration; ``StoredKeyUnreadable`` (naming the
        migration and party) when it does not open here."""
        where = f"the stored migration key of migration {migration_id} (party {party_id})"
        key_id = key_id_of(token)
        if key_id is None:
            try:
                return self._legacy.decrypt(token.encode("ascii")).decode("utf-8")
            except (InvalidToken, ValueError, UnicodeError) as exc:
                raise StoredKeyUnreadable(
                    f"{where} is a v1 (Fernet) ciphertext that {self.setting} does not open",
                    migration_id=migration_id,
                    party_id=party_id,
                ) from exc
        if key_id != self.key_id:
            raise StoredKeyUnreadable(
                f"{where} was sealed with key id {key_id}, not with the key of {self.setting} (key id {self.key_id})",
                migration_id=migration_id,
                party_id=party_id,
            )
        try:
            blob = base64.urlsafe_b64decode(token.split(":", 2)[2].encode("ascii"))
            plain = self._aead.decrypt(blob[:_NONCE], blob[_NONCE:], _associated_data(key_id, migration_id, party_id))
            return plain.decode("utf-8")
        except (InvalidTag, ValueError, UnicodeError, binascii.Error) as exc:
            raise StoredKeyUnreadable(
                f"{where} does not open: it was sealed for another migration (moved from another row?) "
                "or it was altered",
                migration_id=migration_id,
                party_id=party_id,
            ) from exc

    def opens_legacy(self, token: str) -> bool:
        """Whether a ``v1`` (Fernet) ciphertext opens with this vault's setting."""
        try:
            self._legacy.decrypt(token.encode("ascii"))
        except (InvalidToken, ValueError):
            return False
        return True
