"""The gate of a batch's schedule: when a migration of a scheduled batch may make its first
mutating call, and what the worker does with the rest meanwhile.

    claim round (worker.tick)
      Pacer.before_claim(now): re-read the schedules now and then (pacing.refresh_s); log each
        window's opening and closing and each new wave day; one read of every scheduled batch's
        counts; a batch that may not start anything now has its waiting migrations held (one
        UPDATE per batch: next_run_at = when they may start, all the same, so they keep their order)
      store.claim_due(first=..., last=...): higher-priority batches' due rows first
    a claimed migration's step (worker.decide)
      Pacer.gate(record, now):
        its step would make the first mutating call, and its batch is scheduled:
          window closed ──► Hold(next opening)
          store.take_start: count under the batch's lock; room ──► started_at = now, go on
                                                        no room ──► Hold(next hour / day / recheck)
        started already: go on (pacing.hold_followups: outside a window ──► Hold(next opening))

A ``Hold`` becomes a change that only moves ``next_run_at`` (no audit event: the batch's audited
schedule says why), so the migration keeps its place: rows held until the same moment are
claimed in id order then. Everything is computed from the schedule and the database (the
``started_at`` of the batch's migrations); a restarted worker remembers nothing and needs
nothing. The decisions themselves (``start_hold``, ``followup_hold``) are pure.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from migration_engine.engine.baseline import TAKE_IN
from migration_engine.schedule import BatchSchedule
from migration_engine.settings import Settings
from migration_engine.store import Buckets, Change, MigrationRecord, StartCaps, StartCounts, Store

log = logging.getLogger("migration_engine.engine.pacing")

# The states whose step makes a migration's first mutating call (inbound key_issued: the
# migration PUT; outbound requested: prepareToMigrate): where a snapshot is taken, and the gate.
STARTS_IN = TAKE_IN
_NO_OPENING_S = 24 * 3600.0  # no window opens within a year: look again daily
_LOCAL_DAY_MAX = timedelta(hours=26)  # past the longest local day (25 h), short of two


def starts_here(record: MigrationRecord) -> bool:
    """Whether the record's next step is its first mutating call (it has not started yet)."""
    return record.started_at is None and (record.direction, record.state) in STARTS_IN


def buckets(schedule: BatchSchedule, now: datetime) -> Buckets:
    return Buckets(hour_start=schedule.hour_start(now), day_start=schedule.day_start(now))


def caps(schedule: BatchSchedule, now: datetime) -> StartCaps:
    return StartCaps(
        buckets=buckets(schedule, now),
        per_hour=schedule.per_hour,
        per_day=schedule.per_day,
        max_in_flight=schedule.max_in_flight,
    )


def counted(schedule: BatchSchedule) -> bool:
    """Whether the schedule has a cap, so its batch's starts need counting."""
    return schedule.per_hour is not None or schedule.per_day is not None or schedule.max_in_flight is not None


@dataclass(frozen=True)
class Hold:
    """Not now: the migration waits until ``until`` (and keeps its place); ``reason`` for the log."""

    until: datetime
    reason: str


def next_day(schedule: BatchSchedule, now: datetime) -> datetime:
    """The start (UTC) of the local day after ``now``'s (23 or 25 hours away on a DST change)."""
    return schedule.day_start(schedule.day_start(now) + _LOCAL_DAY_MAX)


def _opening(schedule: BatchSchedule, at: datetime) -> datetime:
    """``at`` when open then, else the next opening after it (a day later when none within a year)."""
    found = schedule.next_open(at)
    return found if found is not None else at + timedelta(seconds=_NO_OPENING_S)


def start_hold(schedule: BatchSchedule, counts: StartCounts, now: datetime, *, recheck_s: float) -> Hold | None:
    """Whether a migration of this batch may start at ``now``: None, or until when it waits.

    In order: the window (closed: until it opens), the day's wave (full: the next local day's
    first opening), the hour's wave (full: the next hour's, if a window is open then, else the
    next opening), the in-flight cap (full: ``recheck_s`` later, the first open moment from then:
    nobody knows when a migration in flight will finish).
    """
    if not schedule.is_open(now):
        return Hold(_opening(schedule, now), "the batch's window is closed")
    if schedule.per_day is not None and counts.today >= schedule.per_day:
        return Hold(_opening(schedule, next_day(schedule, now)), f"{counts.today} started today (per_day)")
    if schedule.per_hour is not None and counts.this_hour >= schedule.per_hour:
        return Hold(
            _opening(schedule, schedule.hour_start(now) + timedelta(hours=1)),
            f"{counts.this_hour} started this hour (per_hour)",
        )
    if schedule.max_in_flight is not None and counts.in_flight >= schedule.max_in_flight:
        return Hold(
            _opening(schedule, now + timedelta(seconds=recheck_s)),
            f"{counts.in_flight} in flight (max_in_flight)",
        )
    return None


def followup_hold(schedule: BatchSchedule, now: datetime, *, hold_followups: bool) -> Hold | None:
    """A started migration's next step: goes on, or with ``hold_followups`` waits for a window."""
    if not hold_followups or schedule.is_open(now):
        return None
    return Hold(_opening(schedule, now), "the batch's window is closed (pacing.hold_followups)")


def hold_change(record: MigrationRecord, hold: Hold, *, worker_id: str) -> Change:
    """The change a hold makes: the row is due at ``hold.until``, nothing else changes."""
    return Change(
        migration_id=record.id,
        expected_state=record.state,
        expected_version=record.version,
        lease_owner=worker_id,
        next_run_at=hold.until,
    )


def calendar_edges(schedule: BatchSchedule, now: datetime) -> list[datetime]:
    """The moments after ``now`` at which what the gate decides for this batch may change:
    the window's opening or closing, and while open the next hour (per_hour) and day (per_day)."""
    edges: list[datetime] = []
    if schedule.is_open(now):
        closes = schedule.closes_at(now) if schedule.windows else None  # no windows: never closes
        if closes is not None:
            edges.append(closes)
        if schedule.per_hour is not None:
            edges.append(schedule.hour_start(now) + timedelta(hours=1))
    else:
        opens = schedule.next_open(now)
        if opens is not None:
            edges.append(opens)
    if schedule.per_day is not None:
        edges.append(next_day(schedule, now))
    return sorted(e for e in edges if e > now)


@dataclass(frozen=True)
class _Batch:
    batch_id: int
    name: str
    schedule: BatchSchedule


class Pacer:
    """One worker's view of the batch schedules; the database stays the truth."""

    def __init__(self, *, store: Store, settings: Settings, worker_id: str) -> None:
        self._store = store
        self._worker_id = worker_id
        p = settings.pacing
        self.hold_followups = p.hold_followups
        self.recheck_s = p.recheck_s
        self.refresh_s = p.refresh_s
        self._lock = threading.Lock()
        self._batches: dict[int, _Batch] = {}
        self._read_at: datetime | None = None
        self._open: dict[int, bool] = {}  # what the last claim round saw, for the log
        self._day: dict[int, datetime] = {}

    # ---- the schedules ----------------------------------------------------------------

    def refresh(self, now: datetime, *, force: bool = False) -> dict[int, _Batch]:
        """The scheduled batches, re-read when ``refresh_s`` has passed (or the clock went back)."""
        with self._lock:
            read = self._read_at
            stale = read is None or not (read <= now < read + timedelta(seconds=self.refresh_s))
            if force or stale:
                self._batches = {
                    s.batch_id: _Batch(s.batch_id, s.batch_name, s.schedule)
                    for s in self._store.scheduled_batches()
                    if s.schedule is not None
                }
                self._read_at = now
            batches = self._batches
        self._note_calendar(batches, now)
        return batches

    def schedule_of(self, batch_id: int | None) -> BatchSchedule | None:
        found = None if batch_id is None else self._batches.get(batch_id)
        return None if found is None else found.schedule

    def _note_calendar(self, batches: Mapping[int, _Batch], now: datetime) -> None:
        """Log each window's opening and closing and each new wave day, as this worker sees them."""
        for b in batches.values():
            s = b.schedule
            is_open = s.is_open(now)
            was = self._open.get(b.batch_id)
            self._open[b.batch_id] = is_open
            if was is None or was != is_open:
                if is_open:
                    verb = "window open" if was is None else "window opened"  # None: this worker's first look
                    log.info(
                        f"{verb} for batch {b.name} (closes at {s.closes_at(now)})",
                        extra={"action": "window_opened", "batch": b.name},
                    )
                else:
                    log.info(
                        f"window closed for batch {b.name} (opens at {s.next_open(now)})",
                        extra={"action": "window_closed", "batch": b.name},
                    )
            if s.per_day is not None:
                day = s.day_start(now)
                if self._day.get(b.batch_id) not in (None, day):
                    log.info(
                        f"a new day's wave for batch {b.name}: up to {s.per_day} starts",
                        extra={"action": "wave_reset", "batch": b.name},
                    )
                self._day[b.batch_id] = day

    def claim_order(self) -> tuple[list[list[int]], list[list[int]]]:
        """(batch id groups above the default priority 0, highest first; those below it, highest first)."""
        levels: dict[int, list[int]] = {}
        for b in self._batches.values():
            if b.schedule.priority != 0:
                levels.setdefault(b.schedule.priority, []).append(b.batch_id)
        ordered = sorted(levels.items(), reverse=True)
        return [sorted(ids) for p, ids in ordered if p > 0], [sorted(ids) for p, ids in ordered if p < 0]

    def calendar(self, now: datetime) -> dict[str, datetime]:
        """Batch -> the next moment its gate may decide differently (for the loop's date jobs)."""
        plan: dict[str, datetime] = {}
        for b in self._batches.values():
            edges = calendar_edges(b.schedule, now)
            if edges:
                plan[b.name] = edges[0]
        return plan

    # ---- before a claim -----------------------------------------------------------------

    def before_claim(self, now: datetime) -> int:
        """Hold the waiting migrations of every batch that may not start one now; how many."""
        batches = self.refresh(now)
        if not batches:
            return 0
        capped = {b: buckets(x.schedule, now) for b, x in batches.items() if counted(x.schedule)}
        flying = [b for b, x in batches.items() if x.schedule.max_in_flight is not None]
        counts = self._store.start_counts(capped, flying) if capped else {}
        held = 0
        for b, x in batches.items():
            hold = start_hold(x.schedule, counts.get(b, StartCounts()), now, recheck_s=self.recheck_s)
            if hold is None:
                continue
            n = self._store.hold_waiting(batch_id=b, until=hold.until, starting=STARTS_IN)
            if n:
                log.info(
                    f"{n} migrations of batch {x.name} wait until {hold.until.isoformat()}: {hold.reason}",
                    extra={"action": "held", "batch": x.name},
                )
            held += n
        return held

    # ---- before a step ------------------------------------------------------------------

    def gate(self, record: MigrationRecord, now: datetime) -> Hold | None:
        """Before the record's step: None to run it (its start slot taken, when it starts one), or
        how long it waits."""
        schedule = self.schedule_of(record.batch_id)
        if schedule is None or record.batch_id is None:
            return None
        if not starts_here(record):
            return followup_hold(schedule, now, hold_followups=self.hold_followups)
        hold = start_hold(schedule, StartCounts(), now, recheck_s=self.recheck_s)  # the window alone
        if hold is not None:
            return hold
        taken, counts = self._store.take_start(
            migration_id=record.id,
            batch_id=record.batch_id,
            version=record.version,
            worker_id=self._worker_id,
            caps=caps(schedule, now),
            now=now,
        )
        if taken:
            return None
        # A full cap, or the claim was lost meanwhile (then the change is discarded anyway).
        return start_hold(schedule, counts, now, recheck_s=self.recheck_s) or Hold(now, "the claim was lost")
