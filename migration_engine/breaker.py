"""A circuit breaker for systemic failures, so one bad hour does not burn every party's attempts.

    closed ──(401 after a token refresh, or ≥ failure_rate of ≥ min_calls in window_s fail)──► open
    open ──(cooldown_s passed)──► half-open: one probe step may run
    half-open ──probe ok──► closed        half-open ──probe fails──► open, cooldown doubled (≤ max_cooldown_s)

While open the worker claims nothing; migrations already claimed finish normally.
"""

from __future__ import annotations

import logging
import threading
from collections import deque

from migration_engine.clock import Clock

log = logging.getLogger("migration_engine.breaker")


class CircuitBreaker:
    def __init__(
        self,
        *,
        clock: Clock,
        window_s: float = 60.0,
        min_calls: int = 20,
        failure_rate: float = 0.8,
        cooldown_s: float = 30.0,
        max_cooldown_s: float = 300.0,
    ) -> None:
        self._clock = clock
        self._window_s = window_s
        self._min_calls = min_calls
        self._failure_rate = failure_rate
        self._base_cooldown = cooldown_s
        self._max_cooldown = max_cooldown_s
        self._cooldown = cooldown_s
        self._lock = threading.Lock()
        self._results: deque[tuple[float, bool]] = deque()
        self._opened_at: float | None = None
        self._probing = False
        self.reason = ""

    @property
    def state(self) -> str:
        with self._lock:
            if self._opened_at is None:
                return "closed"
            return "half-open" if self._clock.monotonic() - self._opened_at >= self._cooldown else "open"

    def allowed(self, free: int) -> int:
        """How many migrations the worker may claim now, given ``free`` slots."""
        with self._lock:
            if self._opened_at is None:
                return free
            if self._clock.monotonic() - self._opened_at < self._cooldown or self._probing:
                return 0
            self._probing = True
            log.info("circuit half-open: probing with one migration", extra={"action": "circuit_probe"})
            return min(1, free)

    def record(self, *, ok: bool, reason: str = "", systemic: bool = False) -> None:
        now = self._clock.monotonic()
        with self._lock:
            if self._probing:
                self._probing = False
                if ok:
                    self._close()
                else:
                    self._open(now, f"probe failed: {reason}", escalate=True)
                return
            if self._opened_at is not None:
                return
            self._results.append((now, ok))
            while self._results and now - self._results[0][0] > self._window_s:
                self._results.popleft()
            if systemic:
                self._open(now, reason, escalate=False)
                return
            failures = sum(1 for _, good in self._results if not good)
            if len(self._results) >= self._min_calls and failures / len(self._results) >= self._failure_rate:
                self._open(
                    now, f"{failures} of {len(self._results)} recent steps failed; last: {reason}", escalate=False
                )

    def _open(self, now: float, reason: str, *, escalate: bool) -> None:
        if escalate:
            self._cooldown = min(self._max_cooldown, self._cooldown * 2)
        self._opened_at = now
        self.reason = reason
        self._results.clear()
        log.warning(
            f"circuit open: claiming paused for {self._cooldown:.0f}s because {reason}",
            extra={"action": "circuit_open"},
        )

    def _close(self) -> None:
        self._opened_at = None
        self._cooldown = self._base_cooldown
        self.reason = ""
        log.info("circuit closed: claiming resumed", extra={"action": "circuit_closed"})
