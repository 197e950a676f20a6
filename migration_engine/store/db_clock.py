"""One clock for every worker on PostgreSQL: the database's.

Leases and due times are compared in SQL with times the workers write. If each worker wrote
its host's wall clock, a host whose clock is a minute ahead would see live leases of the others
as expired and take them (and run their steps a second time), and its due times would be a
minute off for everyone else. So on PostgreSQL the engine's ``Clock`` is a ``DatabaseClock``:

- it reads the server's ``clock_timestamp()`` (``SELECT``, three samples, the one with the
  shortest round trip kept), and anchors it to the host's *monotonic* clock at the middle of
  that round trip: the server read its time somewhere inside the round trip, so the anchor is
  off by at most half of it (``uncertainty_s``);
- ``now()`` is that anchor plus the monotonic time elapsed since: no database round trip, and a
  host whose wall clock is stepped (NTP, an operator) changes nothing;
- it measures again every ``every_s`` (60 s), on the first ``now()`` after that, in one thread
  while the others go on with the previous anchor, so the monotonic clock's drift never adds up;
- it logs a warning with the skew (this host's wall clock minus the database's) when that is
  more than a second, when the skew first shows and whenever it moves by another second;
- when the database cannot be read it logs a warning, keeps the anchor it has (at the very
  start: the host's clock) and tries again ``retry_s`` later.

``monotonic``, ``sleep`` and ``skip_to`` are the host clock's. SQLite is one file on one host:
the host's clock is the database's there, and the runtime does not wrap it.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from migration_engine.clock import Clock
from migration_engine.errors import StoreError
from migration_engine.store.database import Database

log = logging.getLogger("migration_engine.store.db_clock")

MEASURE_EVERY_S = 60.0
RETRY_S = 5.0
SAMPLES = 3
SKEW_WARN_S = 1.0


def server_time(db: Database) -> datetime:
    """The database server's current time (PostgreSQL's ``clock_timestamp()``), in UTC."""
    if db.is_sqlite:
        raise ValueError("SQLite has no clock of its own: the host's clock is the database's")
    with db.read("read the database's time") as conn:
        value: datetime = conn.execute(select(func.clock_timestamp())).scalar_one()
    return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Anchor:
    """The database's time at one reading of the host's monotonic clock."""

    server: datetime  # the database's time ...
    mono: float  # ... at this reading of the host's monotonic clock
    uncertainty_s: float  # half the round trip: how far ``server`` may be off
    skew_s: float  # the host's wall clock minus the database's, when measured
    measured: bool = True  # False: the host's own time, while the database cannot be read


class DatabaseClock:
    """The database's time, carried forward by the host's monotonic clock; thread-safe.

    ``read_server_time`` returns the database's current time (``server_time`` above) and raises
    ``StoreError`` when it cannot; the host clock is injected, so tests script both.
    """

    def __init__(
        self,
        host: Clock,
        read_server_time: Callable[[], datetime],
        *,
        every_s: float = MEASURE_EVERY_S,
        retry_s: float = RETRY_S,
        samples: int = SAMPLES,
    ) -> None:
        if every_s <= 0 or retry_s <= 0 or samples < 1:
            raise ValueError("every_s and retry_s must be positive, samples at least 1")
        self._host = host
        self._read = read_server_time
        self._every_s = every_s
        self._retry_s = retry_s
        self._samples = samples
        self._anchor: Anchor | None = None
        self._measure_at = -math.inf  # host monotonic time of the next measurement
        self._measuring = threading.Lock()
        self._warned_skew: float | None = None  # the skew last warned about

    # ---- Clock ----------------------------------------------------------------------------

    def now(self) -> datetime:
        anchor = self._anchor
        if anchor is None or self._host.monotonic() >= self._measure_at:
            anchor = self._refresh()
        return anchor.server + timedelta(seconds=self._host.monotonic() - anchor.mono)

    def monotonic(self) -> float:
        return self._host.monotonic()

    def sleep(self, seconds: float) -> None:
        self._host.sleep(seconds)

    def skip_to(self, when: datetime) -> None:
        """``when`` is on the database's time: the host clock skips as far ahead on its own."""
        ahead = (when - self.now()).total_seconds()
        if ahead > 0:
            self._host.skip_to(self._host.now() + timedelta(seconds=ahead))

    # ---- the measurement ------------------------------------------------------------------

    @property
    def skew_s(self) -> float | None:
        """This host's wall clock minus the database's at the last measurement (None: none yet)."""
        anchor = self._anchor
        return anchor.skew_s if anchor is not None and anchor.measured else None

    @property
    def uncertainty_s(self) -> float | None:
        """How far the last measurement may be off: half its round trip (None: none yet)."""
        anchor = self._anchor
        return anchor.uncertainty_s if anchor is not None and anchor.measured else None

    def _refresh(self) -> Anchor:
        """Measure when due. At the start every thread waits for the first measurement; later
        one thread measures and the others go on with the anchor they have."""
        anchor = self._anchor
        if not self._measuring.acquire(blocking=anchor is None):
            assert anchor is not None
            return anchor
        try:
            anchor = self._anchor
            if anchor is not None and self._host.monotonic() < self._measure_at:
                return anchor  # another thread measured meanwhile
            try:
                return self._measure()
            except StoreError as exc:
                self._measure_at = self._host.monotonic() + self._retry_s
                log.warning(
                    f"cannot read the database's time ({exc}); using "
                    + ("the last measurement" if anchor is not None else "this host's clock")
                    + f" and trying again in {self._retry_s:g} s",
                    extra={"action": "clock_unread"},
                )
                if anchor is None:
                    anchor = Anchor(self._host.now(), self._host.monotonic(), 0.0, 0.0, measured=False)
                    self._anchor = anchor
                return anchor
        finally:
            self._measuring.release()

    def _measure(self) -> Anchor:
        best: tuple[datetime, float, float] | None = None
        for _ in range(self._samples):
            before = self._host.monotonic()
            server = self._read()
            after = self._host.monotonic()
            if best is None or after - before < best[2]:
                best = (server, (before + after) / 2, after - before)
        assert best is not None
        server, mid, round_trip = best
        mono, wall = self._host.monotonic(), self._host.now()
        skew = (wall - (server + timedelta(seconds=mono - mid))).total_seconds()
        anchor = Anchor(server, mid, round_trip / 2, skew)
        self._anchor = anchor
        self._measure_at = mono + self._every_s
        self._report(anchor)
        return anchor

    def _report(self, anchor: Anchor) -> None:
        skew, within = anchor.skew_s, f"±{anchor.uncertainty_s:.3f} s"
        if abs(skew) > SKEW_WARN_S:
            if self._warned_skew is None or abs(skew - self._warned_skew) > SKEW_WARN_S:
                self._warned_skew = skew
                side = "ahead of" if skew > 0 else "behind"
                log.warning(
                    f"this host's clock is {abs(skew):.3f} s ({within}) {side} the database's; "
                    "the engine uses the database's time for leases and due times (set up NTP on this host)",
                    extra={"action": "clock_skew"},
                )
        elif self._warned_skew is not None:
            self._warned_skew = None
            log.info(
                f"this host's clock is within {SKEW_WARN_S:g} s of the database's again ({skew:+.3f} s, {within})",
                extra={"action": "clock_skew"},
            )
        if anchor.uncertainty_s > SKEW_WARN_S:
            log.warning(
                f"the database's time is known only to {within}: its round trip took {2 * anchor.uncertainty_s:.3f} s",
                extra={"action": "clock_uncertain"},
            )
        log.debug(f"database time measured: skew {skew:+.3f} s ({within})", extra={"action": "clock_measured"})
