"""Who may use the console: users and API tokens, roles, signed sessions, CSRF (docs/console.md).

Users (browsers, a password) and tokens (API clients, ``Authorization: Bearer <token>``) come
from ``console.users_file`` (TOML: ``[[user]]`` name, role, password_hash; ``[[token]]`` name,
role, token_hash) and from ``console.users`` / ``console.tokens`` (``name:role:HASH`` entries,
e.g. ``PEPPOL_MIGRATE_CONSOLE__USERS``). Secrets are stored only as scrypt hashes
(``hash_secret``; `peppol-migrate serve --hash-password` makes one).

A browser session is a cookie ``pm_session``: its payload (name, expiry, a CSRF token) with an
HMAC-SHA256 under ``console.session_key``; HttpOnly, SameSite=Strict, expiring after
``console.session_minutes`` (by the runtime's clock). The role is read from the users at every
request, so a user removed or demoted loses the rights at once (after a restart of ``serve``).

CSRF: every form carries the session's token (``csrf_token``), compared in constant time
(``check_csrf``); the login form, before a session exists, uses a double-submit cookie. A call
with a bearer token carries no cookie a browser could send on its own, so it needs no token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from starlette.exceptions import HTTPException
from starlette.requests import Request

from migration_engine.clock import Clock
from migration_engine.errors import ConfigError
from migration_engine.settings import ConsoleSettings

__all__ = [
    "ROLES",
    "SESSION_COOKIE",
    "Auth",
    "LoginRequired",
    "Principal",
    "check_csrf",
    "csrf_token",
    "hash_secret",
    "principal",
    "require",
    "verify_secret",
]

ROLES: tuple[str, ...] = ("viewer", "operator", "admin")  # each may do what those before it may
SESSION_COOKIE = "pm_session"
LOGIN_CSRF_COOKIE = "pm_login_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SESSION_KEY_SETTING = "PEPPOL_MIGRATE_CONSOLE__SESSION_KEY"

# scrypt's cost: about 50 ms and 16 MiB a hash; tokens verified once are remembered by digest.
_N, _R, _P = 2**14, 8, 1
_SCHEME = "scrypt"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_secret(secret: str, *, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$salt$hash`` (URL-safe base64): what a users file or variable stores."""
    if not secret:
        raise ValueError("an empty secret cannot be hashed")
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode("utf-8"), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"{_SCHEME}${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def _parse_hash(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != _SCHEME:
        return None
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, digest = _unb64(parts[4]), _unb64(parts[5])
    except (ValueError, binascii.Error):
        return None
    if n < 2 or n & (n - 1) or n > 2**20 or not 1 <= r <= 32 or not 1 <= p <= 16 or len(digest) < 16:
        return None
    return n, r, p, salt, digest


def verify_secret(secret: str, stored: str) -> bool:
    """Whether ``secret`` is the one ``stored`` (a ``hash_secret`` result) was made of."""
    parsed = _parse_hash(stored)
    if parsed is None or not secret:
        return False
    n, r, p, salt, digest = parsed
    got = hashlib.scrypt(
        secret.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=len(digest), maxmem=128 * r * (n + p + 2) * 2
    )
    return hmac.compare_digest(got, digest)


# ---- who ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    """A logged-in person (session) or an API client (token), with its role."""

    name: str
    role: str
    via: Literal["session", "token"] = "session"
    csrf: str = field(default="", repr=False)  # the session's CSRF token; empty for a token

    @property
    def actor(self) -> str:
        """The audit events' actor for what this principal does, e.g. ``console:alice``."""
        return f"console:{self.name}"

    def can(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


@dataclass(frozen=True)
class Account:
    name: str
    role: str
    secret_hash: str = field(repr=False)


class LoginRequired(Exception):
    """A page asked for without a (valid) session: the app redirects to the login page."""


def _check_account(name: Any, role: Any, hashed: Any, where: str) -> Account:
    if not isinstance(name, str) or not name.strip() or any(c in name for c in ":,\n") or len(name) > 64:
        raise ConfigError(f"{where}: name must be 1-64 characters without ':' or ','")
    if role not in ROLES:
        raise ConfigError(f"{where} ({name}): role must be one of {', '.join(ROLES)}, not {role!r}")
    if not isinstance(hashed, str) or _parse_hash(hashed) is None:
        raise ConfigError(
            f"{where} ({name}): the secret must be a scrypt hash (`peppol-migrate serve --hash-password` makes one); "
            "a plain secret is refused"
        )
    return Account(name.strip(), role, hashed)


def _entries(values: Iterable[str], setting: str) -> list[Account]:
    found = []
    for i, entry in enumerate(values, 1):
        name, _, rest = entry.partition(":")
        role, _, hashed = rest.partition(":")
        found.append(_check_account(name, role, hashed, f"console.{setting} entry {i}"))
    return found


def _file_accounts(path: Path) -> tuple[list[Account], list[Account]]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"console.users_file {path}: cannot read it: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"console.users_file {path}: not valid TOML ({exc})") from None
    unknown = set(data) - {"user", "token"}
    if unknown:
        raise ConfigError(
            f"console.users_file {path}: unknown table(s) {', '.join(sorted(unknown))}; use [[user]] and [[token]]"
        )
    users: list[Account] = []
    tokens: list[Account] = []
    for kind, secret_key, into in (("user", "password_hash", users), ("token", "token_hash", tokens)):
        rows = data.get(kind, [])
        if not isinstance(rows, list):
            raise ConfigError(f"console.users_file {path}: {kind} must be an array of tables ([[{kind}]])")
        for i, row in enumerate(rows, 1):
            where = f"console.users_file {path}, [[{kind}]] number {i}"
            if not isinstance(row, Mapping):
                raise ConfigError(f"{where}: not a table")
            into.append(_check_account(row.get("name"), row.get("role"), row.get(secret_key), where))
    return users, tokens


class Auth:
    """The console's users, tokens and session signing, built once from the settings."""

    def __init__(self, settings: ConsoleSettings, *, clock: Clock) -> None:
        self.clock = clock
        self.session_s = settings.session_minutes * 60.0
        users: list[Account] = []
        tokens: list[Account] = []
        if settings.users_file:
            users, tokens = _file_accounts(Path(settings.users_file))
        users += _entries(settings.users, "users")
        tokens += _entries(settings.tokens, "tokens")
        self.users: dict[str, Account] = {}
        for a in users:
            if a.name in self.users:
                raise ConfigError(f"console: user {a.name} is configured twice")
            self.users[a.name] = a
        self.tokens = tokens
        self._key = settings.session_key.encode("utf-8")
        self._known_tokens: dict[bytes, Account] = {}  # sha256(token) -> account, once scrypt said yes
        # A hash to check against for unknown names, so that a wrong name costs as long as a wrong password.
        self._decoy = hash_secret(secrets.token_urlsafe(16))

    @staticmethod
    def problem(settings: ConsoleSettings) -> str | None:
        """Why the console cannot start with these settings, naming the setting; None when it can."""
        if not settings.session_key:
            return f"console.session_key is not set ({SESSION_KEY_SETTING}, e.g. `openssl rand -base64 32`)"
        if not settings.users_file and not settings.users and not settings.tokens:
            return (
                "no console users are configured: set console.users_file (a TOML file of [[user]] and [[token]]) "
                "or PEPPOL_MIGRATE_CONSOLE__USERS"
            )
        return None

    # ---- logging in -----------------------------------------------------------------------

    def check_password(self, name: str, password: str) -> Account | None:
        account = self.users.get(name)
        ok = verify_secret(password, account.secret_hash if account else self._decoy)
        return account if ok and account is not None else None

    def check_token(self, token: str) -> Account | None:
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        known = self._known_tokens.get(digest)
        if known is not None:
            return known
        for account in self.tokens:
            if verify_secret(token, account.secret_hash):
                self._known_tokens[digest] = account
                return account
        return None

    # ---- sessions -------------------------------------------------------------------------

    def _sign(self, payload: bytes) -> str:
        return _b64(hmac.new(self._key, payload, hashlib.sha256).digest())

    def new_session(self, account: Account) -> tuple[str, str]:
        """A signed session cookie value for ``account`` and its CSRF token."""
        csrf = secrets.token_urlsafe(24)
        expires = self.clock.now().timestamp() + self.session_s
        payload = json.dumps({"u": account.name, "exp": expires, "csrf": csrf}, separators=(",", ":")).encode()
        return f"{_b64(payload)}.{self._sign(payload)}", csrf

    def session(self, cookie: str | None) -> Principal | None:
        """The principal of a session cookie; None when absent, forged, expired or of a removed user."""
        if not cookie or "." not in cookie:
            return None
        body, _, mac = cookie.partition(".")
        try:
            payload = _unb64(body)
        except (ValueError, binascii.Error):
            return None
        if not hmac.compare_digest(self._sign(payload), mac):
            return None
        try:
            data = json.loads(payload)
            name, expires, csrf = str(data["u"]), float(data["exp"]), str(data["csrf"])
        except (ValueError, KeyError, TypeError):
            return None
        if expires <= self.clock.now().timestamp():
            return None
        account = self.users.get(name)
        if account is None:
            return None
        return Principal(account.name, account.role, "session", csrf)


def _auth(request: Request) -> Auth:
    auth: Auth = request.app.state.auth
    return auth


def is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _find(request: Request) -> Principal | None:
    auth = _auth(request)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        account = auth.check_token(token.strip())
        return None if account is None else Principal(account.name, account.role, "token")
    return auth.session(request.cookies.get(SESSION_COOKIE))


async def principal(request: Request) -> Principal:
    """Who makes the request. Anonymous (or a bad token, an expired session): 401 for /api/...,
    ``LoginRequired`` (a redirect to /login) for a page."""
    found: Principal | None = request.scope.get("console.principal")
    if found is None:
        found = _find(request)
        if found is None:
            if is_api(request):
                raise HTTPException(401, "log in or send Authorization: Bearer <token>", {"WWW-Authenticate": "Bearer"})
            raise LoginRequired()
        request.scope["console.principal"] = found
    return found


def require(who: Principal, role: str) -> None:
    """403 unless ``who`` has ``role`` or a higher one."""
    if not who.can(role):
        raise HTTPException(403, f"{who.name} is a {who.role}; this needs the {role} role")


def csrf_token(request: Request) -> str:
    """The token a form of this session must carry (the logged-in principal's)."""
    who: Principal | None = request.scope.get("console.principal")
    if who is None:
        who = _find(request)
    return who.csrf if who is not None else ""


def check_csrf(request: Request, form: Mapping[str, Any] | None = None) -> None:
    """403 unless the form field ``csrf_token`` (or the header X-CSRF-Token) is the session's
    token. A bearer-token call needs none: no browser sends that header on its own."""
    who: Principal | None = request.scope.get("console.principal") or _find(request)
    if who is not None and who.via == "token":
        return
    sent = (form or {}).get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    expected = who.csrf if who is not None else ""
    if not isinstance(sent, str) or not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise HTTPException(403, "the form's CSRF token is missing or wrong: reload the page and try again")
