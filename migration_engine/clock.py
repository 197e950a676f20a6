"""Time as a dependency: engine code never reads the wall clock or sleeps directly.

``SystemClock`` is the real one. ``ManualClock`` is for tests: its ``sleep`` advances
its own time instantly, so a test of a poll that waits an hour runs in microseconds.
The sandbox and the worker may share one ``ManualClock`` when they run in one process.

``skip_to`` is how the worker's loop, idle until a migration's next run, lets time pass:
a ``ManualClock`` jumps there, the real clock does nothing (the loop looks again every poll
interval until real time has got there). So tests run the production loop unchanged.

Several workers on one PostgreSQL database compare each other's leases and due times, so
there the production clock is the database's (``store.db_clock.DatabaseClock``, wired by
the runtime around ``SystemClock``): a host whose own clock is off cannot take live leases.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """What the engine needs of time."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for durations and rate limits)."""

    def sleep(self, seconds: float) -> None:
        """Wait (or, on a manual clock, advance) this many seconds."""

    def skip_to(self, when: datetime) -> None:
        """Nothing happens before ``when``: a clock that may jump goes there; a real one does nothing."""


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def skip_to(self, when: datetime) -> None:
        return None  # real time gets there on its own; the caller looks again later


class ManualClock:
    """A clock that moves only when told to; thread-safe."""

    def __init__(self, start: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._now = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        self._mono = 1000.0

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go back")
        with self._lock:
            self._now += timedelta(seconds=seconds)
            self._mono += seconds

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.advance(seconds)

    def skip_to(self, when: datetime) -> None:
        """Advance to ``when``, or stay when it is not later than now."""
        with self._lock:
            if when > self._now:
                self._mono += (when - self._now).total_seconds()
                self._now = when
