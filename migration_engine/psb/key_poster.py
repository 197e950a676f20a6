"""The https key handoff's HTTP: POST an outbound migration key to the new provider.

Not the PSB: the endpoint (``handoff.endpoint``) belongs to another access-point provider, so
nothing of the PSB client goes with the request (no token, no subscription key, no rate
limit), and the poster has a connection pool of its own. It lives in ``psb`` because this is
where HTTP is spoken (the import contract keeps httpx here), and because an answer is read
the PSB client's way (``errors.py``):

    POST {"partyId", "migrationKey"} ──▶ 2xx: delivered (the body is ignored)
        │  no answer: a timeout or a dropped connection ──▶ PsbTransientError (TIMEOUT, CONNECTION)
        │  408, 429, 5xx ──▶ PsbTransientError (retry_after_s from Retry-After)
        │  401, 403 ──▶ PsbAuthError; any other 4xx ──▶ PsbPermanentError (codes HANDOFF{status}...)
        ▼
    an ``ApiCall`` to every sink of this view (the worker writes it as an ``api_call`` audit
    event), and one log line

The worker retries the transient errors with its retry policy, like the PSB's. The URL must
be HTTPS (plain HTTP only to a loopback host, for the sandbox), since the request carries
the key; the key never appears in an error, a log line, an ``ApiCall`` or a repr, and the
URL is shown without its query (which may carry the receiver's token).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx

from migration_engine import __version__
from migration_engine.clock import Clock, SystemClock
from migration_engine.errors import ConfigError, PsbError, PsbPermanentError, PsbTransientError
from migration_engine.psb.client import CookielessClient
from migration_engine.psb.endpoints import ApiCall, safe_url
from migration_engine.psb.errors import Scrubber, error_for_status, excerpt, parse_error_body

__all__ = ["CallSink", "KeyPoster"]

logger = logging.getLogger("migration_engine.psb.key_poster")

CallSink = Callable[[ApiCall], None]

_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def handoff_url(url: str) -> tuple[str | None, str | None]:
    """``(safe_url(url), None)`` if a key may be POSTed to ``url``, else ``(..., problem)``.

    HTTPS only, since the request carries a migration key; plain HTTP is allowed to a
    loopback host, for the sandbox.
    """
    try:
        shown, parts = safe_url(url), urlsplit(url)
    except ValueError:  # e.g. a port that is not a number
        return None, "the handoff endpoint is not a valid URL"
    if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS):
        return shown, "the handoff endpoint must be an https:// URL: the request carries a migration key"
    return shown, None


class KeyPoster:
    """Thread-safe; one per worker. ``recording(sink)`` gives a view that reports each exchange
    to ``sink`` and shares the pool; only the poster built with the constructor closes it."""

    def __init__(
        self,
        *,
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        clock: Clock | None = None,
    ) -> None:
        """``transport`` replaces the network (tests pass ``httpx.MockTransport``). TLS is always
        verified: the request carries a key, whatever ``psb.verify_tls`` allows for the PSB."""
        if not timeout_s > 0:
            raise ConfigError(f"the handoff timeout must be above 0, not {timeout_s}")
        self._http = CookielessClient(
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
            headers={"User-Agent": f"peppol-migrate/{__version__}"},
            follow_redirects=False,  # a redirect must never carry the key elsewhere
        )
        self._timeout_s = timeout_s
        self._clock = clock or SystemClock()
        self._sinks: tuple[CallSink, ...] = ()
        self._owner = True

    def recording(self, sink: CallSink) -> KeyPoster:
        """A view that also reports every exchange to ``sink`` (on the calling thread)."""
        view = copy.copy(self)
        view._sinks = (*self._sinks, sink)
        view._owner = False
        return view

    def close(self) -> None:
        """Close the connection pool (a no-op on a view)."""
        if self._owner:
            self._http.close()

    def __repr__(self) -> str:
        return f"KeyPoster(timeout_s={self._timeout_s:g}{'' if self._owner else ', view'})"

    def post(self, url: str, *, party_id: str, key: str) -> None:
        """POST ``{"partyId", "migrationKey"}`` as JSON to ``url``; raise a ``PsbError`` on failure."""
        path, problem = handoff_url(url)
        if problem or path is None:
            raise PsbPermanentError(
                problem or "invalid URL", code="HANDOFF.URL01", party_id=party_id, method="POST", path=path
            )
        scrub = Scrubber(keys=(key,))
        started = self._clock.monotonic()
        try:
            response = self._http.post(url, json={"partyId": party_id, "migrationKey": key})
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            error = self._no_answer(exc, scrub, party_id=party_id, path=path)
            self._report(path, party_id, None, None, error, started)
            raise error from exc
        status = response.status_code
        request_id = response.headers.get("x-request-id") or response.headers.get("request-id")
        if 200 <= status < 300:
            self._report(path, party_id, status, request_id, None, started)
            return
        body = parse_error_body(status, response.content, scrub, prefix="HANDOFF")
        error = error_for_status(
            status, body, retry_after=response.headers.get("retry-after"), now=self._clock.now(),
            party_id=party_id, method="POST", path=path, request_id=request_id,
        )
        self._report(path, party_id, status, error.request_id, error, started)
        raise error

    def _no_answer(self, exc: Exception, scrub: Scrubber, *, party_id: str, path: str) -> PsbError:
        name = type(exc).__name__
        detail = excerpt(scrub(str(exc)), 200)
        if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
            message, code = f"the URL cannot be used ({name}): {detail}", "HANDOFF.URL01"
            return PsbPermanentError(message, code=code, party_id=party_id, method="POST", path=path)
        if isinstance(exc, httpx.TimeoutException):
            message, code = f"no answer within {self._timeout_s:g} s ({name}) {detail}", "TIMEOUT"
        else:
            message, code = f"connection failed ({name}) {detail}", "CONNECTION"
        return PsbTransientError(message.rstrip(), code=code, party_id=party_id, method="POST", path=path)

    def _report(
        self,
        path: str,
        party_id: str,
        status: int | None,
        request_id: str | None,
        error: PsbError | None,
        started: float,
    ) -> None:
        call = ApiCall(
            method="POST",
            path=path,
            party_id=party_id,
            status=status,
            duration_ms=(self._clock.monotonic() - started) * 1000,
            request_id=request_id,
            error_code=error.code if error is not None else None,
        )
        logger.log(
            logging.DEBUG if error is None else logging.INFO,
            "POST %s -> %s in %.0f ms%s", path, "no answer" if status is None else status, call.duration_ms,
            f" [{call.error_code}]" if call.error_code else "",
            extra={"party_id": party_id, "action": "handoff.post", "status": status,
                   "request_id": request_id, "error_code": call.error_code},
        )
        for sink in self._sinks:
            try:
                sink(call)
            except Exception:  # an audit bug must not turn a delivered key into a failed handoff
                logger.exception("an ApiCall sink failed; the handoff's result stands",
                                 extra={"party_id": party_id, "action": "handoff.post"})
