"""The simulated identity server: OAuth2 client-credentials and password grants, opaque tokens
that expire on the model clock."""

from __future__ import annotations

import hmac
import secrets
import threading
from collections.abc import Mapping
from datetime import datetime, timedelta

from migration_engine.clock import Clock
from migration_engine.sandbox.config import SandboxConfig


class OAuthError(Exception):
    """A refused token request; ``error`` is the RFC 6749 error code."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description


def _same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


class TokenStore:
    """Issues and checks bearer tokens. Thread-safe."""

    def __init__(self, config: SandboxConfig, clock: Clock) -> None:
        self._config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, datetime] = {}
        self._issued: list[str] = []  # every token ever issued, for tests' leak checks
        self.ttl_s = config.token_ttl_s

    def issue(self, form: Mapping[str, str]) -> dict[str, object]:
        """The token response for a ``/connect/token`` form, or ``OAuthError``."""
        grant = form.get("grant_type")
        if grant not in ("client_credentials", "password"):
            raise OAuthError("unsupported_grant_type", "grant_type must be client_credentials or password")
        if not (
            _same(form.get("client_id"), self._config.client_id)
            and _same(form.get("client_secret"), self._config.client_secret)
        ):
            raise OAuthError("invalid_client", "unknown client or wrong client secret")
        if grant == "password" and not (
            _same(form.get("username"), self._config.username)
            and _same(form.get("password"), self._config.password)
        ):
            raise OAuthError("invalid_grant", "invalid username or password")
        scope = form.get("scope")
        if scope and "ap" not in scope.split():
            raise OAuthError("invalid_scope", "this sandbox serves scope 'ap' only")
        token = secrets.token_urlsafe(32)
        with self._lock:
            ttl = self.ttl_s
            now = self._clock.now()
            if len(self._tokens) > 10_000:
                self._tokens = {t: exp for t, exp in self._tokens.items() if exp > now}
            self._tokens[token] = now + timedelta(seconds=ttl)
            self._issued.append(token)
        return {"access_token": token, "expires_in": int(ttl), "token_type": "Bearer", "scope": "ap"}

    def valid(self, token: str | None) -> bool:
        if not token:
            return False
        with self._lock:
            expires = self._tokens.get(token)
        return expires is not None and self._clock.now() < expires

    def issued(self) -> list[str]:
        """Every access token issued so far, expired and revoked ones too (test data: for checks
        that no token leaks into logs or reports)."""
        with self._lock:
            return list(self._issued)

    def revoke_all(self) -> int:
        with self._lock:
            count = len(self._tokens)
            self._tokens.clear()
        return count
