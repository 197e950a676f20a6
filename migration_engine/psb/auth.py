"""OAuth2 access tokens for the PSB: the request form, the answer, and a shared cache.

No I/O here: ``client.py`` does the HTTP exchange with the identity server and passes it in
as a ``fetch`` callable, so the cache is plain, thread-safe bookkeeping.

- Grant (``docs/psb-contract.md``, "Authentication"): ``password`` when a username is configured, else
  ``client_credentials``; always ``scope=ap``; form-encoded, credentials in the body.
- Renewal: a token is used until fewer than 60 s of its validity remain (eConnect's .NET
  client does the same), measured on the injected clock's ``monotonic()`` from the moment
  the token request was sent. A token that lives less than 120 s is renewed at half its
  life instead, so a short-lived token is still reused.
- Concurrency: many worker threads share one cache; one of them fetches while the others
  wait for its result instead of asking too.
- A 401 from the API makes the caller ``invalidate`` the token it used; a token already
  replaced by another thread is left alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from migration_engine.clock import Clock
from migration_engine.errors import PsbAuthError, PsbError, PsbTransientError
from migration_engine.psb.errors import ErrorBody, error_for_status

SCOPE = "ap"
RENEW_BEFORE_S = 60.0
DEFAULT_EXPIRES_IN_S = 3600.0  # "A token is valid for one hour" (docs/psb-contract.md, "Authentication")


@dataclass(frozen=True)
class Credentials:
    """What the identity server needs; the secrets never show in a repr."""

    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def grant_type(self) -> str:
        return "password" if self.username else "client_credentials"

    def form(self) -> dict[str, str]:
        """The token request's form fields (``docs/psb-contract.md``, "Authentication")."""
        data: dict[str, str] = {}
        if self.username:
            data["username"] = self.username
            data["password"] = self.password or ""
        data["scope"] = SCOPE
        data["grant_type"] = self.grant_type
        data["client_id"] = self.client_id
        if self.client_secret:
            data["client_secret"] = self.client_secret
        return data


@dataclass(frozen=True)
class Token:
    """An access token and when (on the monotonic clock) to stop using it."""

    value: str = field(repr=False)
    renew_at: float


def parse_token_response(body: Any, *, sent_at: float, method: str, path: str) -> Token:
    """The token in an identity server's 2xx answer; ``PsbAuthError`` OAUTH02 without one."""
    value = body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(value, str) or not value:
        raise PsbAuthError(
            "the identity server answered without an access_token",
            code="OAUTH02",
            method=method,
            path=path,
        )
    try:
        lifetime = float(body.get("expires_in", DEFAULT_EXPIRES_IN_S))
    except (TypeError, ValueError):
        lifetime = DEFAULT_EXPIRES_IN_S
    if not lifetime > 0:
        lifetime = DEFAULT_EXPIRES_IN_S
    margin = min(RENEW_BEFORE_S, lifetime / 2)
    return Token(value=value, renew_at=sent_at + lifetime - margin)


class TokenCache:
    """One cached token shared by every view of a client; thread-safe."""

    def __init__(self, *, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._token: Token | None = None

    def get(self, fetch: Callable[[], Token]) -> str:
        """The cached token, or a new one from ``fetch`` when it is missing or due for renewal.

        The lock is held across ``fetch`` on purpose: threads that need a token meanwhile wait
        for this one instead of fetching their own. ``fetch`` raises on failure; nothing is
        cached then.
        """
        with self._lock:
            token = self._token
            if token is None or self._clock.monotonic() >= token.renew_at:
                self._token = None
                token = fetch()
                self._token = token
            return token.value

    def invalidate(self, value: str) -> None:
        """Forget the token ``value`` (the API refused it), unless it was already replaced."""
        with self._lock:
            if self._token is not None and self._token.value == value:
                self._token = None

    def __repr__(self) -> str:
        state = "empty" if self._token is None else "holding a token"
        return f"TokenCache({state})"


def token_error(status: int, body: ErrorBody, **kwargs: Any) -> PsbError:
    """The exception for a non-2xx token answer: transient for 5xx/408/429, else OAUTH01."""
    refused = ErrorBody(
        code="OAUTH01",
        message=f"the identity server refused the token request ({body.code}): {body.message}",
        help_link=body.help_link,
        request_id=body.request_id,
    )
    error = error_for_status(status, refused, **kwargs)
    if isinstance(error, PsbTransientError):
        return error
    return PsbAuthError(
        error.message,
        status=status,
        code=error.code,
        party_id=error.party_id,
        request_id=error.request_id,
        help_link=error.help_link,
        method=error.method,
        path=error.path,
    )
