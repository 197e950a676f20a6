"""Pacing's reads and writes: a batch's starts per hour and day, its migrations in flight, the
start slot a migration takes, and holding a batch's waiting migrations until they may start.

A *start* is ``migrations.started_at``: set when a migration takes its start slot, right before
its first mutating call. Every count is derived from that column, so there is no counter to
reset at midnight and nothing a restarted worker has to remember: the current hour's and day's
starts are an index range (``ix_migrations_batch_id_started_at``), the batch's migrations in
flight a partial index (``ix_migrations_in_flight``: started and not finished).

``take_start`` is the one place a start is granted. It counts and marks in ONE transaction that
holds the batch's lock: ``SELECT ... FOR UPDATE`` on the batch row on PostgreSQL (so the start
transactions of one batch run one after the other, whichever worker process runs them), SQLite's
write lock (``BEGIN IMMEDIATE``) there. Two workers can therefore never both see the last slot
free: the second counts the first's start. The mark is a compare-and-set on the claim (id,
version, lease owner, not started yet) that leaves the version alone, so the worker's later
compare-and-set with the step's outcome still matches.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, false, func, or_, select, update

from migration_engine.machine import Direction, State
from migration_engine.store.database import Database
from migration_engine.store.queries import open_state
from migration_engine.store.schema import batches, migrations

m = migrations.c

StartingStates = Iterable[tuple[Direction, State]]


@dataclass(frozen=True)
class StartCounts:
    """A batch's starts in the current clock hour and local day, and its migrations in flight
    (started, not completed or cancelled; one in needs_attention counts)."""

    this_hour: int = 0
    today: int = 0
    in_flight: int = 0


@dataclass(frozen=True)
class Buckets:
    """Where one batch's wave counts begin: its current hour and its current local day (UTC)."""

    hour_start: datetime
    day_start: datetime


def _starting(states: StartingStates) -> Any:
    return or_(*(and_(m.direction == d.value, m.state == s.value) for d, s in states))


def _counts_in(conn: Any, buckets: Mapping[int, Buckets], in_flight_of: Collection[int]) -> dict[int, StartCounts]:
    """The counts of the batches in ``buckets`` (starts) and ``in_flight_of`` (in flight)."""
    hours: dict[int, int] = {}
    days: dict[int, int] = {}
    if buckets:
        ids = sorted(buckets)
        hour = case(*((m.batch_id == b, buckets[b].hour_start) for b in ids))
        day = case(*((m.batch_id == b, buckets[b].day_start) for b in ids))
        since = min(min(x.hour_start, x.day_start) for x in buckets.values())
        query = (
            select(
                m.batch_id,
                func.sum(case((m.started_at >= hour, 1), else_=0)),
                func.sum(case((m.started_at >= day, 1), else_=0)),
            )
            .where(m.batch_id.in_(ids), m.started_at >= since)
            .group_by(m.batch_id)
        )
        for batch_id, n_hour, n_day in conn.execute(query):
            hours[int(batch_id)], days[int(batch_id)] = int(n_hour or 0), int(n_day or 0)
    flying: dict[int, int] = {}
    if in_flight_of:
        query = (
            select(m.batch_id, func.count())
            .where(m.batch_id.in_(sorted(in_flight_of)), m.started_at.is_not(None), open_state())
            .group_by(m.batch_id)
        )
        flying = {int(b): int(n) for b, n in conn.execute(query)}
    return {
        b: StartCounts(this_hour=hours.get(b, 0), today=days.get(b, 0), in_flight=flying.get(b, 0))
        for b in set(buckets) | set(in_flight_of)
    }


def start_counts(db: Database, buckets: Mapping[int, Buckets], in_flight_of: Collection[int]) -> dict[int, StartCounts]:
    """Every scheduled batch's counts in one read: starts since each batch's hour and day
    (``buckets``), in flight for ``in_flight_of``. A batch with nothing counted gets zeros."""
    if not buckets and not in_flight_of:
        return {}
    with db.read("count the batches' starts") as conn:
        return _counts_in(conn, buckets, in_flight_of)


@dataclass(frozen=True)
class StartCaps:
    """The caps ``take_start`` checks (None: no cap) and the batch's current buckets."""

    buckets: Buckets
    per_hour: int | None = None
    per_day: int | None = None
    max_in_flight: int | None = None

    def room(self, counts: StartCounts) -> bool:
        return not (
            (self.per_hour is not None and counts.this_hour >= self.per_hour)
            or (self.per_day is not None and counts.today >= self.per_day)
            or (self.max_in_flight is not None and counts.in_flight >= self.max_in_flight)
        )


def take_start(
    db: Database,
    *,
    migration_id: int,
    batch_id: int,
    version: int,
    worker_id: str,
    caps: StartCaps,
    now: datetime,
) -> tuple[bool, StartCounts]:
    """Take a start slot for a claimed migration: count the batch's starts under its lock and,
    when every cap has room, set ``started_at = now``. Returns (taken, the counts before it).

    Not taken when a cap is full, or when the claim no longer matches (lease lost, or the row
    started meanwhile): the caller does not make the first mutating call then.
    """
    with db.write("take a start slot") as conn:
        if not db.is_sqlite:  # one start transaction per batch at a time, across processes
            conn.execute(select(batches.c.id).where(batches.c.id == batch_id).with_for_update())
        flying = [batch_id] if caps.max_in_flight is not None else []
        counts = _counts_in(conn, {batch_id: caps.buckets}, flying)[batch_id]
        if not caps.room(counts):
            return False, counts
        marked = conn.execute(
            update(migrations)
            .where(
                m.id == migration_id,
                m.version == version,
                m.lease_owner == worker_id,
                m.started_at.is_(None),
            )
            .values(started_at=now)
        ).rowcount
        return marked == 1, counts


def hold_waiting(db: Database, *, batch_id: int, until: datetime, starting: StartingStates) -> int:
    """Postpone the batch's migrations that are due, not started, not leased, not paused and in a
    state whose step would start them, to ``until``; return how many.

    One UPDATE through ``ix_migrations_batch_due``. Every row gets the same ``until``, so they
    keep their order (claims go by due time, then id). The version is bumped like any change
    of the row; no audit event is written (the schedule, audited, says why they wait).
    """
    now = db.clock.now()
    stmt = (
        update(migrations)
        .where(
            m.batch_id == batch_id,
            m.next_run_at <= now,
            m.paused == false(),
            m.started_at.is_(None),
            open_state(),
            or_(m.lease_until.is_(None), m.lease_until <= now),
            _starting(starting),
        )
        .values(next_run_at=until, version=m.version + 1)
    )
    with db.write("hold a batch's waiting migrations") as conn:
        return int(conn.execute(stmt).rowcount or 0)
