"""The PSB client: the one module that speaks HTTP (httpx), to the PSB and its identity server.

The client is split by concern (the ``psb`` package); only this module imports httpx (and
``key_poster.py``, which POSTs an outbound key to another provider, not to the PSB):

    client.py         PsbClient: connection pool, tokens, rate limit, sending, reporting
    endpoints.py      one method per PSB endpoint: paths, bodies, answer shapes
    auth.py           OAuth2 form, token answer, the shared thread-safe token cache
    errors.py         error body parsing, status -> exception, scrubbing of secrets
    ratelimit.py      the token bucket behind ``max_rps`` (the shared budget: ``limiter.py``)

Call flow of one endpoint method (e.g. ``prepare_to_migrate``)::

    endpoint method ──▶ _call ──▶ TokenCache.get ──(none, or < 60 s left)──▶ _fetch_token
                          │                                    POST {identity}/connect/token
                          ▼
                     TokenBucket.acquire            (max_rps, shared by every view)
                          │
                     budget.acquire                 (budgets.psb_per_s, shared by every worker;
                          │                          cannot be reserved ──▶ PsbTransientError)
                          ▼
                     _exchange ── httpx.Client.request ──▶ PSB       (timeout_s, pooled)
                          │  no answer (timeout, connection) ──▶ report, PsbTransientError from exc
                          │  non-2xx ──▶ errors.py: parse {code, message, ...}, classify
                          ▼
                     401 the first time? ──▶ report, drop the token, fetch a new one, repeat once
                          │
                          ▼
                     _report ──▶ one log line; an ApiCall to every sink of this view
                          │
                          ▼
                     raise the error (unless the method accepts it, e.g. 404 on DELETE)
                     or return the parsed JSON

Every HTTP exchange, the token request included, reaches the view's sinks as an
``ApiCall``: success, error answer, or no answer (``status=None``). The client never
retries on its own apart from the single 401 refresh: retries are the worker's decisions.

Secrets (token, client secret, password, subscription key) and the migration key never
appear in an exception, a log line or a repr: an error body that echoes them is scrubbed
(``errors.Scrubber``), a key shows as ``keys.mask(key)``. Bodies of successful answers
are never quoted, since they may carry a key.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from migration_engine import __version__
from migration_engine.clock import Clock, SystemClock
from migration_engine.errors import (
    ConfigError,
    PsbAuthError,
    PsbError,
    PsbPermanentError,
    PsbTransientError,
)
from migration_engine.limiter import BudgetUnavailable, RateLimiter
from migration_engine.psb.auth import Credentials, Token, TokenCache, parse_token_response, token_error
from migration_engine.psb.endpoints import Answer, ApiCall, PsbEndpoints, safe_url
from migration_engine.psb.errors import Scrubber, error_for_status, excerpt, parse_error_body
from migration_engine.psb.ratelimit import TokenBucket

__all__ = ["ApiCall", "PsbClient"]

logger = logging.getLogger("migration_engine.psb.client")


class _NoCookies(httpx.Cookies):
    """A jar that keeps nothing: the PSB authenticates with a bearer token, never a cookie."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class CookielessClient(httpx.Client):
    """``httpx.Client`` without its cookie jar. Reading every answer for cookies (through
    ``http.cookiejar``'s request and response adapters) was about 5% of a call's CPU in the
    benchmark; a session cookie from anywhere is also nothing we want to send back. Public, so the
    key handoff's client and the benchmark's bare loop are built the same way."""

    _no_cookies = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        return None


@dataclass
class _Shared:
    """What every view of one client shares."""

    http: httpx.Client
    base_url: str
    token_url: str
    credentials: Credentials
    subscription_key: str | None = field(repr=False)
    tokens: TokenCache
    limiter: RateLimiter | None
    clock: Clock
    timeout_s: float
    budget: RateLimiter | None = None

    def scrubber(self, *, token: str | None = None, key: str | None = None) -> Scrubber:
        creds = self.credentials
        return Scrubber(
            secrets=(token, creds.client_secret, creds.password, self.subscription_key), keys=(key,)
        )


@dataclass(frozen=True)
class _Request:
    """One request to send, and what the audit and the logs call it."""

    method: str
    url: str
    path: str  # shown in ApiCall and errors: the API path, or the token URL without its query
    party_id: str | None
    action: str  # the log's action name
    json_body: Any = field(default=None, repr=False)
    form: Mapping[str, str] | None = field(default=None, repr=False)  # only the token request
    params: Sequence[tuple[str, str]] = ()
    key: str | None = field(default=None, repr=False)
    expect_json: bool = True


class PsbClient(PsbEndpoints):
    """A thread-safe client of the PSB API; one per process, shared by every worker thread.

    ``recording(sink)`` gives a view that reports each exchange to ``sink``; views share the
    connection pool, the token cache and the rate limiter. Only the client built with the
    constructor owns the pool: closing a view does nothing.
    """

    def __init__(
        self,
        *,
        base_url: str,
        identity_url: str,
        client_id: str,
        client_secret: str | None = None,
        username: str | None = None,
        password: str | None = None,
        subscription_key: str | None = None,
        timeout_s: float = 30.0,
        max_rps: float | None = None,
        verify_tls: bool = True,
        transport: httpx.BaseTransport | None = None,
        clock: Clock | None = None,
        max_connections: int = 64,
        budget: RateLimiter | None = None,
    ) -> None:
        """Build the client; nothing is sent until the first call.

        Empty strings count as "not configured" (settings use them for absent secrets):
        ``username`` selects the password grant, ``subscription_key`` adds its header.
        ``max_rps`` of None or 0 means no rate limit. ``budget`` is waited for after it: the
        budget every worker of the database shares (``limiter.SharedLimiter``), or None.
        ``transport`` replaces the network
        (tests pass ``httpx.MockTransport``); ``verify_tls`` and ``max_connections`` then do
        nothing, as they configure the default transport. Bad values raise ``ConfigError``.
        """
        if not timeout_s > 0:
            raise ConfigError(f"psb.timeout_s must be above 0, not {timeout_s}")
        if max_rps is not None and max_rps < 0:
            raise ConfigError(f"psb.max_rps must be 0 (no limit) or above, not {max_rps}")
        if max_connections < 1:
            raise ConfigError(f"the PSB client needs at least 1 connection, not {max_connections}")
        for name, url in (("psb.base_url", base_url), ("psb.identity_url", identity_url)):
            if urlsplit(url).scheme not in ("http", "https"):
                raise ConfigError(f"{name} must be an http(s) URL, not {url!r}")
        clock = clock or SystemClock()
        http = CookielessClient(
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            verify=verify_tls,
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": f"peppol-migrate/{__version__}"},
            follow_redirects=False,  # a redirect must never carry a token or a key elsewhere
        )
        self._shared = _Shared(
            http=http,
            base_url=base_url.rstrip("/"),
            token_url=identity_url.rstrip("/") + "/connect/token",
            credentials=Credentials(
                client_id=client_id,
                client_secret=client_secret or None,
                username=username or None,
                password=password or None,
            ),
            subscription_key=subscription_key or None,
            tokens=TokenCache(clock=clock),
            limiter=TokenBucket(rate=max_rps, clock=clock) if max_rps else None,
            clock=clock,
            timeout_s=timeout_s,
            budget=budget,
        )
        self._sinks: tuple[Callable[[ApiCall], None], ...] = ()
        self._owner = True

    # -- lifecycle -----------------------------------------------------------------------

    def recording(self, sink: Callable[[ApiCall], None]) -> PsbClient:
        """A view of this client that also reports every exchange (success or error) to ``sink``.

        The view shares the connection pool, token cache and rate limiter; a view of a view
        reports to both sinks. A sink that raises is logged and otherwise ignored, so an
        audit bug never hides a result such as a freshly issued migration key. Sinks run on
        the calling thread (for a token request, under the token lock): keep them quick and
        never call the client from one.
        """
        view = copy.copy(self)
        view._sinks = (*self._sinks, sink)
        view._owner = False
        return view

    def close(self) -> None:
        """Close the connection pool (a no-op on a view)."""
        if self._owner:
            self._shared.http.close()

    def __enter__(self) -> PsbClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        s = self._shared
        view = "" if self._owner else f", view with {len(self._sinks)} sink(s)"
        return (
            f"PsbClient(base_url={s.base_url!r}, client_id={s.credentials.client_id!r}, "
            f"grant={s.credentials.grant_type!r}{view})"
        )

    # -- the machinery -------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        party_id: str | None,
        action: str,
        json_body: Any = None,
        params: Sequence[tuple[str, str]] | None = None,
        key: str | None = None,
        allow: tuple[int, ...] = (),
        validate: Callable[[Any], str | None] | None = None,
        expect_json: bool = True,
    ) -> Answer:
        """One authorised PSB call, repeated once with a new token after a 401."""
        req = _Request(
            method, self._shared.base_url + path, path, party_id, action,
            json_body=json_body, params=tuple(params or ()), key=key, expect_json=expect_json,
        )
        answer, token = self._authorised(req)
        if answer.status == 401:
            self._report(req, answer)
            self._shared.tokens.invalidate(token)
            logger.info(
                "%s %s: 401, fetching a new token and repeating once", method, path,
                extra={"party_id": party_id, "action": "psb.token_refresh"},
            )
            answer, _ = self._authorised(req)
        if answer.error is None and validate is not None and (problem := validate(answer.body)):
            answer.error = PsbPermanentError(
                problem, status=answer.status, code=f"PSB{answer.status}.BODY01", party_id=party_id,
                request_id=answer.request_id, method=method, path=path,
            )
        if answer.status in allow:  # e.g. 404 on a DELETE: already done
            self._report(req, answer)
        else:
            self._finish(req, answer)
        return answer

    def _authorised(self, req: _Request) -> tuple[Answer, str]:
        """Send ``req`` with the cached (or a new) token, after the rate limiter's wait."""
        s = self._shared
        token = s.tokens.get(lambda: self._fetch_token(req.party_id))
        headers = {"Authorization": f"Bearer {token}"}
        if s.subscription_key:
            headers["Subscription-Key"] = s.subscription_key
        if s.limiter is not None:
            s.limiter.acquire()
        if s.budget is not None:
            try:
                s.budget.acquire()
            except BudgetUnavailable as exc:  # fail closed: no call while the budget cannot be had
                raise PsbTransientError(
                    f"the shared PSB budget (budgets.psb_per_s) could not be reserved, so the call was not "
                    f"made: {exc}",
                    code="BUDGET", party_id=req.party_id, method=req.method, path=req.path,
                ) from exc
        return self._exchange(req, headers=headers, prefix="PSB", token=token), token

    def ensure_token(self) -> None:
        """Get an access token now, through the cache every call uses (a no-op while the cached
        one is fresh): ``run`` asks once before its first claim, so missing or rejected
        credentials stop it with their setting named instead of tripping the breaker later."""
        self._shared.tokens.get(lambda: self._fetch_token(None))

    def _fetch_token(self, party_id: str | None) -> Token:
        """POST the credentials to the identity server (runs under the token cache's lock)."""
        s = self._shared
        form = s.credentials.form()
        req = _Request("POST", s.token_url, safe_url(s.token_url), party_id, "psb.token", form=form)
        sent_at = s.clock.monotonic()
        answer = self._exchange(req, headers={}, prefix="OAUTH")
        token: Token | None = None
        if answer.error is None:
            try:
                token = parse_token_response(answer.body, sent_at=sent_at, method=req.method, path=req.path)
            except PsbAuthError as exc:
                exc.party_id, exc.status, exc.request_id = party_id, answer.status, answer.request_id
                answer.error = exc
        self._finish(req, answer)
        assert token is not None  # _finish raised otherwise
        return token

    def _exchange(
        self, req: _Request, *, headers: dict[str, str], prefix: str, token: str | None = None
    ) -> Answer:
        """Send one request and read its answer, which the caller reports. No answer: report and raise."""
        s = self._shared
        query: list[tuple[str, str | int | float | bool | None]] = list(req.params)
        started = s.clock.monotonic()
        try:
            response = s.http.request(
                req.method, req.url, headers=headers, json=req.json_body, data=req.form, params=query or None
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            # The scrubber is built only for an error: most answers never need it.
            error = _no_answer(exc, s.scrubber(token=token, key=req.key), req, s.timeout_s)
            self._report(req, Answer(None, None, error, None, (s.clock.monotonic() - started) * 1000))
            raise error from exc
        duration_ms = (s.clock.monotonic() - started) * 1000
        status = response.status_code
        request_id = response.headers.get("x-request-id") or response.headers.get("request-id")
        if not 200 <= status < 300:
            body = parse_error_body(status, response.content, s.scrubber(token=token, key=req.key), prefix=prefix)
            classify = token_error if req.form is not None else error_for_status
            error = classify(
                status, body, retry_after=response.headers.get("retry-after"), now=s.clock.now(),
                party_id=req.party_id, method=req.method, path=req.path, request_id=request_id,
            )
            return Answer(status, None, error, error.request_id, duration_ms)
        if not req.expect_json or not response.content.strip():
            return Answer(status, None, None, request_id, duration_ms)
        try:
            return Answer(status, json.loads(response.content), None, request_id, duration_ms)
        except ValueError as exc:
            # Never quote a successful body: it may carry a key or a token.
            ctype = excerpt(response.headers.get("content-type", "none"), 60)
            cls = PsbAuthError if req.form is not None else PsbPermanentError
            error = cls(
                f"the {status} answer is not JSON ({len(response.content)} bytes, content-type {ctype})",
                status=status, code="OAUTH02" if req.form is not None else f"{prefix}{status}.JSON02",
                party_id=req.party_id, request_id=request_id, method=req.method, path=req.path,
            )
            error.__cause__ = exc
            return Answer(status, None, error, request_id, duration_ms)

    def _finish(self, req: _Request, answer: Answer) -> None:
        """Report the exchange, then raise its error if it has one."""
        self._report(req, answer)
        if answer.error is not None:
            raise answer.error

    def _report(self, req: _Request, answer: Answer) -> None:
        """One log line and one ``ApiCall`` to every sink of this view."""
        call = ApiCall(
            method=req.method,
            path=req.path,
            party_id=req.party_id,
            status=answer.status,
            duration_ms=answer.duration_ms,
            request_id=answer.request_id,
            error_code=answer.error.code if answer.error is not None else None,
        )
        outcome = "no answer" if call.status is None else str(call.status)
        logger.log(
            logging.DEBUG if answer.error is None else logging.INFO,
            "%s %s -> %s in %.0f ms%s", call.method, call.path, outcome, call.duration_ms,
            f" [{call.error_code}]" if call.error_code else "",
            extra={"party_id": call.party_id, "action": req.action, "status": call.status,
                   "request_id": call.request_id, "error_code": call.error_code},
        )
        for sink in self._sinks:
            try:
                sink(call)
            except Exception:
                logger.exception("an ApiCall sink failed; the call's result stands",
                                 extra={"party_id": call.party_id, "action": req.action})


def _no_answer(exc: Exception, scrub: Scrubber, req: _Request, timeout_s: float) -> PsbError:
    """The error for a request that got no HTTP answer."""
    where: dict[str, Any] = {"party_id": req.party_id, "method": req.method, "path": req.path}
    name = type(exc).__name__
    detail = excerpt(scrub(str(exc)), 200)
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return PsbPermanentError(f"the URL cannot be used ({name}): {detail}", code="URL01", **where)
    if isinstance(exc, httpx.TimeoutException):
        message = f"no answer within {timeout_s:g} s ({name}) {detail}"
        return PsbTransientError(message.rstrip(), code="TIMEOUT", **where)
    return PsbTransientError(f"connection failed ({name}) {detail}".rstrip(), code="CONNECTION", **where)
