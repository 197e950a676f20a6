"""Clocks for tests of time itself: a host whose wall clock is off."""

from __future__ import annotations

from datetime import datetime, timedelta

from migration_engine.clock import Clock


class SkewedClock:
    """``base``'s time shifted by ``offset_s`` (positive: ahead), as on a host whose clock is
    wrong; its monotonic clock, sleeps and skips are ``base``'s."""

    def __init__(self, base: Clock, offset_s: float) -> None:
        self._base = base
        self._offset = timedelta(seconds=offset_s)

    def now(self) -> datetime:
        return self._base.now() + self._offset

    def monotonic(self) -> float:
        return self._base.monotonic()

    def sleep(self, seconds: float) -> None:
        self._base.sleep(seconds)

    def skip_to(self, when: datetime) -> None:
        self._base.skip_to(when - self._offset)
