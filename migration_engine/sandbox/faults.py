"""Fault injection and the API call log, as one raw ASGI middleware in front of ``/api/``.

For every ``/api/`` request it assigns a request id (``X-Request-Id``, and the ``requestId``
of error bodies), then, as the run's faults say: waits ``latency_ms``; answers 429 with
``Retry-After`` above ``rate_limit_rps``; answers 429 for a share ``throttle_rate``; answers
500/503 for a share ``error_rate``; or breaks the connection for a share ``drop_rate``.
Finally it logs the call in the model. ``/connect/token`` and ``/sandbox/`` pass through untouched.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from migration_engine.sandbox.catalog import classify_call
from migration_engine.sandbox.common import SandboxError, error_body, party_id
from migration_engine.sandbox.config import SandboxConfig
from migration_engine.sandbox.model import SandboxModel

log = logging.getLogger(__name__)

REQUEST_ID = "sandbox.request_id"
"""Scope key of the request id the middleware assigned."""
PARTY_ID = "sandbox.party_id"
"""Scope key a handler may set to name the call's party when it is not in the path."""


class DroppedConnection(Exception):
    """Raised on purpose after a truncated response so the server closes the connection."""


@dataclass(frozen=True)
class Decision:
    latency_s: float
    fault: str | None  # rate_limited | throttled | error | dropped_before | dropped_after
    status: int = 0
    retry_after_s: int = 0


_FIELDS = {
    "latencyMs": "latency_ms",
    "errorRate": "error_rate",
    "throttleRate": "throttle_rate",
    "rateLimitRps": "rate_limit_rps",
    "dropRate": "drop_rate",
    "dropAfterProcessingShare": "drop_after_processing_share",
    "seed": "seed",
}
_SHARES = ("error_rate", "throttle_rate", "drop_rate", "drop_after_processing_share")


class FaultState:
    """The faults of this run; changeable at runtime. Thread-safe. The rate limit is a token
    bucket (burst: one second's worth) on the model clock's ``monotonic()``, so with a
    ``ManualClock`` it refills only when the clock is advanced."""

    def __init__(self, config: SandboxConfig, clock_monotonic: Callable[[], float]) -> None:
        self._lock = threading.Lock()
        self._monotonic = clock_monotonic
        self.latency_ms = config.latency_ms
        self.error_rate = config.error_rate
        self.throttle_rate = config.throttle_rate
        self.rate_limit_rps = config.rate_limit_rps
        self.drop_rate = config.drop_rate
        self.drop_after_processing_share = config.drop_after_processing_share
        self.seed = config.seed
        self._rng = random.Random(config.seed)
        self._bucket = max(float(config.rate_limit_rps or 0.0), 1.0)
        self._last = float(clock_monotonic())

    def update(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Apply ``{latencyMs, errorRate, throttleRate, rateLimitRps, dropRate,
        dropAfterProcessingShare, seed}`` (camelCase or snake_case); ``ValueError`` on a bad value, nothing applied."""
        values: dict[str, Any] = {}
        for key, value in changes.items():
            name = _FIELDS.get(key, key)
            if name not in _FIELDS.values():
                raise ValueError(f"unknown fault {key!r}; known: {', '.join(_FIELDS)}")
            if name in ("rate_limit_rps", "seed") and value is None:
                values[name] = None
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{key} must be a number")
            if name in _SHARES and not 0 <= value <= 1:
                raise ValueError(f"{key} must be between 0 and 1")
            if name != "seed" and (value < 0 or (name == "rate_limit_rps" and value == 0)):
                raise ValueError(f"{key} must be positive")
            values[name] = int(value) if name == "seed" else float(value)
        with self._lock:
            for name, value in values.items():
                setattr(self, name, value)
            if "seed" in values:
                self._rng = random.Random(self.seed)
            if "rate_limit_rps" in values:
                self._bucket = max(float(self.rate_limit_rps or 0.0), 1.0)
                self._last = float(self._monotonic())
        return self.snapshot()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {camel: getattr(self, name) for camel, name in _FIELDS.items()}

    def decide(self) -> Decision:
        with self._lock:
            latency = max(self.latency_ms, 0.0) / 1000.0
            if self.rate_limit_rps:
                now = float(self._monotonic())
                rate = self.rate_limit_rps
                self._bucket = min(max(rate, 1.0), self._bucket + (now - self._last) * rate)
                self._last = now
                if self._bucket < 1.0:
                    wait = max(1, math.ceil((1.0 - self._bucket) / rate))
                    return Decision(latency, "rate_limited", 429, wait)
                self._bucket -= 1.0
            if self.throttle_rate and self._rng.random() < self.throttle_rate:
                return Decision(latency, "throttled", 429, 1)
            if self.error_rate and self._rng.random() < self.error_rate:
                return Decision(latency, "error", self._rng.choice((500, 503)))
            if self.drop_rate and self._rng.random() < self.drop_rate:
                after = self._rng.random() < self.drop_after_processing_share
                return Decision(latency, "dropped_after" if after else "dropped_before")
            return Decision(latency, None)


class FaultMiddleware:
    def __init__(self, app: ASGIApp, model: SandboxModel, faults: FaultState) -> None:
        self.app = app
        self.model = model
        self.faults = faults

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        received = self.model.clock.now()  # the call log's time: arrival, before any latency or work
        request_id = secrets.token_hex(16)
        scope[REQUEST_ID] = request_id
        method, path = scope["method"], scope["path"]
        raw_party, mutating = classify_call(method, path)
        decision = self.faults.decide()
        # In flight from arrival until answered (``CallLog.in_flight``): what tests wait on.
        token = self.model.call_log.started(method, path, _party_or_none(raw_party or _one_party_asked(scope)))
        if decision.latency_s > 0:
            await asyncio.sleep(decision.latency_s)

        def record(status: int | None) -> None:
            party = scope.get(PARTY_ID) or _party_or_none(raw_party or _one_party_asked(scope))
            self.model.call_log.record(method, path, party, status, mutating, request_id, decision.fault, at=received)
            self.model.call_log.finished(token)

        if decision.fault in ("rate_limited", "throttled", "error"):
            record(decision.status)
            await self._error(send, decision, request_id)
            return
        if decision.fault == "dropped_before":
            # Dropped BEFORE processing: the call had no effect.
            record(None)
            await self._drop(send, 200, request_id)
        dropping = decision.fault == "dropped_after"
        status = 500

        async def forward(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), _rid_header(request_id)]}
            if not dropping:
                await send(message)

        try:
            await self.app(scope, receive, forward)
        finally:
            record(status)
        if dropping:
            # Dropped AFTER processing: the call took effect, but the client never learns so.
            await self._drop(send, status, request_id)

    async def _error(self, send: Send, decision: Decision, request_id: str) -> None:
        if decision.fault == "throttled":
            message = "Too many requests: the service is throttling (injected fault); retry later."
        elif decision.status == 429:
            message = "Too many requests: the rate limit of this sandbox run was exceeded; retry later."
        else:
            message = "The service is temporarily unavailable (injected fault); retry later."
        headers = [(b"content-type", b"application/json"), _rid_header(request_id)]
        if decision.retry_after_s:
            headers.append((b"retry-after", str(decision.retry_after_s).encode("ascii")))
        body = error_body(
            f"API{decision.status}", message, request_id, self.model.config.help_link, self.model.clock.now()
        )
        headers.append((b"content-length", str(len(body)).encode("ascii")))
        await send({"type": "http.response.start", "status": decision.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    async def _drop(send: Send, status: int, request_id: str) -> None:
        """Announce more body than is sent, then raise: the server closes the connection."""
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", b"4096"),
            _rid_header(request_id),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"partial": tr', "more_body": True})
        raise DroppedConnection("sandbox fault: connection dropped mid-response")


def _rid_header(request_id: str) -> tuple[bytes, bytes]:
    return (b"x-request-id", request_id.encode("ascii"))


def _one_party_asked(scope: Scope) -> str | None:
    """The party of a lookup for one party (``?partyIds=X``), known even when a fault answers
    before the handler does."""
    asked = [v for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1")) if k == "partyIds"]
    return asked[0] if len(asked) == 1 and "," not in asked[0] else None


def _party_or_none(raw: str | None) -> str | None:
    if raw is None:
        return None
    try:
        return party_id(raw)
    except SandboxError:
        return None


class DropLogFilter(logging.Filter):
    """Keeps the server's log free of the tracebacks of deliberately dropped connections."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DroppedConnection)
