"""A circuit breaker for systemic failures, so one bad hour does not burn every party's attempts.

    closed ──(401 after a token refresh, or ≥ failure_rate of ≥ min_calls in window_s fail)──► open
    open ──(cooldown_s passed)──► half-open: one probe step may run
    half-open ──probe ok──► closed        half-open ──probe fails──► open, cooldown doubled (≤ max_cooldown_s)

While open the worker claims nothing; migrations already claimed finish normally. A probe
whose claim finds nothing due, or whose step made no API call, proves nothing either way: it
is handed back (``release_probe``) and the next tick probes again. ``on_change(state, reason)``
is called, outside the lock, on every change of state (the worker records it for `status`).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

from migration_engine.clock import Clock

log = logging.getLogger("migration_engine.engine.breaker")


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
        on_change: Callable[[str, str], None] | None = None,
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
        self._failures = 0  # failures in _results, kept as they come and go (no scan per step)
        self._opened_at: float | None = None
        self._probing = False
        self._on_change = on_change
        self.reason = ""

    @property
    def state(self) -> str:
        with self._lock:
            if self._opened_at is None:
                return "closed"
            return "half-open" if self._clock.monotonic() - self._opened_at >= self._cooldown else "open"

    def may_claim(self) -> bool:
        """Whether ``allowed`` would give a slot now (without taking the probe)."""
        with self._lock:
            return self._opened_at is None or (
                not self._probing and self._clock.monotonic() - self._opened_at >= self._cooldown
            )

    def allowed(self, free: int) -> int:
        """How many migrations the worker may claim now, given ``free`` slots."""
        with self._lock:
            if self._opened_at is None:
                return free
            if self._clock.monotonic() - self._opened_at < self._cooldown or self._probing or free <= 0:
                return 0
            self._probing = True
            log.info("circuit half-open: probing with one migration", extra={"action": "circuit_probe"})
        self._changed("half-open")
        return 1

    def release_probe(self) -> None:
        """Hand back a probe that proved nothing (nothing was due, or its step called no API)."""
        with self._lock:
            self._probing = False

    def record(self, *, ok: bool, reason: str = "", systemic: bool = False) -> None:
        """One step's result: ``ok`` unless a call failed transiently or systemically."""
        before = self.state
        self._record(ok=ok, reason=reason, systemic=systemic)
        after = self.state
        if after != before:
            self._changed(after)

    def _changed(self, state: str) -> None:
        if self._on_change is not None:
            self._on_change(state, self.reason)

    def _record(self, *, ok: bool, reason: str, systemic: bool) -> None:
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
            self._failures += not ok
            while self._results and now - self._results[0][0] > self._window_s:
                self._failures -= not self._results.popleft()[1]
            if systemic:
                self._open(now, reason, escalate=False)
                return
            failures = self._failures
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
        self._failures = 0
        log.warning(
            f"circuit open: claiming paused for {self._cooldown:.0f}s because {reason}",
            extra={"action": "circuit_open"},
        )

    def _close(self) -> None:
        self._opened_at = None
        self._cooldown = self._base_cooldown
        self.reason = ""
        log.info("circuit closed: claiming resumed", extra={"action": "circuit_closed"})
