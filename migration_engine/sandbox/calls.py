"""The log of API calls the sandbox received, for tests and the demo to inspect."""

from __future__ import annotations

import threading
from collections import deque
from datetime import datetime
from typing import Any

from migration_engine.clock import Clock
from migration_engine.sandbox.common import iso


class CallLog:
    """Thread-safe, bounded (oldest calls are forgotten first)."""

    def __init__(self, clock: Clock, limit: int) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._calls: deque[dict[str, Any]] = deque(maxlen=limit)
        self._seq = 0
        self._open: dict[int, dict[str, Any]] = {}  # arrived, not answered yet
        self._opened = 0

    def started(self, method: str, path: str, party: str | None) -> int:
        """A call arrived (before any latency or work); ``finished`` with the token ends it."""
        with self._lock:
            self._opened += 1
            self._open[self._opened] = {
                "method": method,
                "path": path,
                "partyId": party,
                "at": iso(self._clock.now()),
            }
            return self._opened

    def finished(self, token: int) -> None:
        with self._lock:
            self._open.pop(token, None)

    def in_flight(self, party: str | None = None) -> list[dict[str, Any]]:
        """The calls received and not answered yet (oldest first), optionally for one party."""
        with self._lock:
            return [dict(c) for c in self._open.values() if party is None or c["partyId"] == party]

    def record(
        self,
        method: str,
        path: str,
        party: str | None,
        status: int | None,
        mutating: bool,
        request_id: str | None = None,
        fault: str | None = None,
        at: datetime | None = None,
    ) -> None:
        """``party`` is canonical or None; ``status`` None when the connection was dropped before
        any work; ``fault`` names an injected fault (error, rate_limited, throttled,
        dropped_before, dropped_after) or is None; ``at`` when the call arrived (default: now)."""
        with self._lock:
            self._seq += 1
            self._calls.append(
                {
                    "seq": self._seq,
                    "at": iso(at or self._clock.now()),
                    "method": method,
                    "path": path,
                    "partyId": party,
                    "status": status,
                    "mutating": mutating,
                    "requestId": request_id,
                    "fault": fault,
                }
            )

    def list(self, party: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            return [
                dict(c) for c in self._calls if c["seq"] > since and (party is None or c["partyId"] == party)
            ]

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()
