"""The console's reads: keyset-paginated, filtered, indexed, for a campaign of 100,000 parties.

Every page is ``WHERE id > :after_id ... ORDER BY id LIMIT :limit + 1`` over an index that
starts with the filter's columns and ends with ``id`` (revision 0012), so page 500 costs what
page 1 does; the extra row only says whether there is a next page. Counts are ``GROUP BY``
over indexes that cover them. The chart of a batch's states over time is computed from the
state moves (``created``, ``transition`` and ``operator`` events) of a window of hours and the
current counts, backwards. On SQLite the moves are read per hour from ``state_hours``, a summary
a trigger keeps in step with the audit trail (revision 0013); SQLite has one writer at a time, so
the trigger's upserts cannot deadlock. On PostgreSQL, where several workers commit groups of
moves at once and such upserts could take row locks in different orders, the window's events
are counted directly (the (kind, at) index keeps that within the console's target).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, func, literal_column, or_, select

from migration_engine.machine import State
from migration_engine.store import audit
from migration_engine.store.database import Database
from migration_engine.store.queries import IN_CHUNK, RECORD_COLUMNS, to_record
from migration_engine.store.records import AuditEvent, MigrationRecord
from migration_engine.store.schema import audit_events, batches, migrations
from migration_engine.store.schema import state_hours as state_hours_table

m = migrations.c
e = audit_events.c

# What a person must act on: the needs-attention queue.
ATTENTION_STATES: tuple[State, ...] = (State.NEEDS_ATTENTION, State.KEY_REJECTED, State.KEY_EXPIRED)
MAX_LIMIT = 500
# The kinds of audit event that can move a migration's state (``created`` puts it in its first).
MOVE_KINDS = ("created", "transition", "operator")
MAX_CHART_HOURS = 24 * 14
FILTER_COLUMNS = {
    "last_error_code": m.last_error_code,
    "new_provider": m.new_provider,
    "current_provider": m.current_provider,
}


@dataclass(frozen=True)
class BatchCounts:
    """A batch with its migrations per state."""

    id: int
    name: str
    created_at: datetime
    source: str | None
    priority: int
    scheduled: bool
    by_state: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_state.values())


@dataclass(frozen=True)
class MigrationFilter:
    """What a batch's table is filtered on; every field left None (or empty) matches all."""

    states: tuple[State, ...] = ()
    error_code: str | None = None
    new_provider: str | None = None
    current_provider: str | None = None
    paused: bool | None = None


@dataclass(frozen=True)
class Page:
    """One page of migrations in id order; ``next_after_id`` is the cursor of the next page,
    None on the last one."""

    items: list[MigrationRecord]
    next_after_id: int | None


@dataclass(frozen=True)
class StateHours:
    """Counts per state at the end of each hour: ``hours[i]`` is an hour's start (UTC), and
    ``series[state][i]`` how many of the batch's migrations were in ``state`` when it ended
    (the last hour: now)."""

    hours: list[datetime]
    series: dict[str, list[int]] = field(default_factory=dict)


def _check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be 1..{MAX_LIMIT}, not {limit}")
    return limit


def _counts_by_batch(conn: Connection, batch_id: int | None = None) -> dict[int, dict[str, int]]:
    query = select(m.batch_id, m.state, func.count()).where(m.batch_id.is_not(None))
    if batch_id is not None:
        query = query.where(m.batch_id == batch_id)
    found: dict[int, dict[str, int]] = {}
    for bid, state, n in conn.execute(query.group_by(m.batch_id, m.state)):
        found.setdefault(int(bid), {})[str(state)] = int(n)
    return found


def _batch_columns() -> Any:
    return select(
        batches.c.id,
        batches.c.name,
        batches.c.created_at,
        batches.c.source,
        batches.c.priority,
        batches.c.schedule.is_not(None).label("scheduled"),
    )


def _batch_counts(row: Any, counts: dict[int, dict[str, int]]) -> BatchCounts:
    return BatchCounts(
        id=row.id,
        name=row.name,
        created_at=row.created_at,
        source=row.source,
        priority=int(row.priority),
        scheduled=bool(row.scheduled),
        by_state=dict(sorted(counts.get(row.id, {}).items())),
    )


def batches_with_counts(db: Database) -> list[BatchCounts]:
    """Every batch, newest first, with its migrations per state (one GROUP BY over an index)."""
    with db.read("list batches") as conn:
        counts = _counts_by_batch(conn)
        rows = conn.execute(_batch_columns().order_by(batches.c.id.desc())).all()
    return [_batch_counts(row, counts) for row in rows]


def batch_counts(db: Database, name: str) -> BatchCounts | None:
    """Batch ``name`` with its migrations per state; None when there is no such batch."""
    with db.read("read a batch") as conn:
        row = conn.execute(_batch_columns().where(batches.c.name == name)).first()
        if row is None:
            return None
        return _batch_counts(row, _counts_by_batch(conn, row.id))


def _page(conn: Connection, db: Database, query: Any, *, after_id: int, limit: int) -> Page:
    rows = conn.execute(query.where(m.id > after_id).order_by(m.id).limit(limit + 1)).mappings().all()
    more = len(rows) > limit
    items = [to_record(row, db.batch_name(conn, row["batch_id"])) for row in rows[:limit]]
    return Page(items, items[-1].id if more and items else None)


def _filtered(flt: MigrationFilter) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if flt.states:
        where.append(m.state.in_(sorted({State(s).value for s in flt.states})))
    if flt.error_code is not None:
        where.append(m.last_error_code == flt.error_code)
    if flt.new_provider is not None:
        where.append(m.new_provider == flt.new_provider)
    if flt.current_provider is not None:
        where.append(m.current_provider == flt.current_provider)
    if flt.paused is not None:
        where.append(m.paused == flt.paused)
    return where


def batch_page(
    db: Database, batch_id: int, *, flt: MigrationFilter | None = None, after_id: int = 0, limit: int = 50
) -> Page:
    """A batch's migrations in id order after ``after_id``, filtered: one index range each
    (state, error code and each provider have an index ``(batch_id, column, id)``)."""
    query = select(*RECORD_COLUMNS).where(m.batch_id == batch_id, *_filtered(flt or MigrationFilter()))
    with db.read("read a batch's migrations") as conn:
        return _page(conn, db, query, after_id=after_id, limit=_check_limit(limit))


def attention_page(
    db: Database,
    *,
    states: Sequence[State] = ATTENTION_STATES,
    batch_id: int | None = None,
    after_id: int = 0,
    limit: int = 50,
) -> Page:
    """The needs-attention queue (every batch, or one) in id order after ``after_id``; open,
    unpaused and paused alike (a paused one is shown as such)."""
    wanted = sorted({State(s).value for s in states}) or [s.value for s in ATTENTION_STATES]
    query = select(*RECORD_COLUMNS).where(m.state.in_(wanted))
    if batch_id is not None:
        query = query.where(m.batch_id == batch_id)
    with db.read("read the needs-attention queue") as conn:
        return _page(conn, db, query, after_id=after_id, limit=_check_limit(limit))


def attention_counts(db: Database) -> dict[str, int]:
    """How many migrations wait in each needs-attention state, every batch together."""
    query = select(m.state, func.count()).where(m.state.in_([s.value for s in ATTENTION_STATES])).group_by(m.state)
    with db.read("count the needs-attention queue") as conn:
        return {str(state): int(n) for state, n in conn.execute(query)}


def value_counts(db: Database, batch_id: int, column: str) -> dict[str, int]:
    """The values of ``column`` (last_error_code, new_provider, current_provider) in a batch with
    their counts, most first: the choices of a filter. NULL left out."""
    col = FILTER_COLUMNS[column]
    query = select(col, func.count()).where(m.batch_id == batch_id, col.is_not(None)).group_by(col)
    with db.read("count a batch's values") as conn:
        found = {str(v): int(n) for v, n in conn.execute(query)}
    return dict(sorted(found.items(), key=lambda kv: (-kv[1], kv[0])))


def records_by_ids(db: Database, migration_ids: Iterable[int]) -> dict[int, MigrationRecord]:
    """The migrations of these ids (unknown ids left out)."""
    wanted = sorted(set(migration_ids))
    found: dict[int, MigrationRecord] = {}
    with db.read("read migrations") as conn:
        for start in range(0, len(wanted), IN_CHUNK):
            rows = conn.execute(select(*RECORD_COLUMNS).where(m.id.in_(wanted[start : start + IN_CHUNK]))).mappings()
            for row in rows:
                found[row["id"]] = to_record(row, db.batch_name(conn, row["batch_id"]))
    return found


def latest_snapshots(db: Database, migration_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """The detail of each migration's latest ``snapshot`` audit event (the preflight lookup the
    worker stored); migrations without one left out. Read over the (migration_id, seq) key."""
    wanted = sorted(set(migration_ids))
    found: dict[int, dict[str, Any]] = {}
    with db.read("read stored snapshots") as conn:
        for start in range(0, len(wanted), IN_CHUNK):
            chunk = wanted[start : start + IN_CHUNK]
            latest = (
                select(e.migration_id, func.max(e.seq).label("seq"))
                .where(e.migration_id.in_(chunk), e.kind == "snapshot")
                .group_by(e.migration_id)
                .subquery()
            )
            rows = conn.execute(
                select(e.migration_id, e.detail).join(
                    latest, and_(e.migration_id == latest.c.migration_id, e.seq == latest.c.seq)
                )
            )
            for mid, detail in rows:
                found[int(mid)] = json.loads(detail)
    return found


def events_of(db: Database, migration_ids: Sequence[int]) -> dict[int, list[AuditEvent]]:
    """Each migration's audit events in order, in one read transaction."""
    with db.read("read audit events") as conn:
        return {mid: audit.events_of(conn, mid) for mid in migration_ids}


def _hour_of(dialect: str) -> Any:
    """The hour an event's ``at`` falls in, as text ``YYYY-MM-DD HH`` on both dialects."""
    if dialect == "sqlite":
        return func.substr(e.at, 1, 13)  # stored as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC)
    return func.to_char(func.timezone("UTC", e.at), literal_column("'YYYY-MM-DD HH24'"))


def _moves_query(db: Database, batch_id: int, since: datetime) -> Any:
    """(hour, from_state or '', to_state, n) of the batch's state moves since ``since``."""
    if db.is_sqlite:
        h = state_hours_table.c
        return select(h.hour, h.from_state, h.to_state, h.n).where(
            h.batch_id == batch_id, h.hour >= since.strftime("%Y-%m-%d %H")
        )
    bucket = _hour_of(db.dialect).label("hour")
    moved = or_(e.from_state.is_(None), e.from_state != e.to_state)
    return (
        select(bucket, e.from_state, e.to_state, func.count())
        .select_from(audit_events.join(migrations, m.id == e.migration_id))
        .where(e.kind.in_(MOVE_KINDS), e.at >= since, e.to_state.is_not(None), moved, m.batch_id == batch_id)
        .group_by(bucket, e.from_state, e.to_state)
    )


def state_hours(db: Database, batch_id: int, *, now: datetime, hours: int = 48) -> StateHours:
    """Counts per state of a batch at the end of each of the last ``hours`` hours.

    The counts now come from the (batch_id, state) index; each hour's state moves (events of
    kind created/transition/operator whose from and to states differ), read from the hourly
    summary ``state_hours`` on SQLite, from the window's events on PostgreSQL (see the module
    docstring), are undone from the newest hour back."""
    if not 1 <= hours <= MAX_CHART_HOURS:
        raise ValueError(f"hours must be 1..{MAX_CHART_HOURS}, not {hours}")
    end = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    starts = [end - timedelta(hours=hours - 1 - i) for i in range(hours)]
    query = _moves_query(db, batch_id, starts[0])
    with db.read("chart a batch's states") as conn:
        current = _counts_by_batch(conn, batch_id).get(batch_id, {})
        moves = [(hour, from_state or None, to_state, n) for hour, from_state, to_state, n in conn.execute(query)]
    index = {s.strftime("%Y-%m-%d %H"): i for i, s in enumerate(starts)}
    # net[i][state]: how much the moves of hour i changed the state's count
    net: list[dict[str, int]] = [{} for _ in starts]
    states = set(current)
    for hour, from_state, to_state, n in moves:
        i = index.get(str(hour))
        if i is None:
            continue  # a clock skewed into the future: counted in the current figures only
        net[i][to_state] = net[i].get(to_state, 0) + int(n)
        states.add(to_state)
        if from_state is not None:
            net[i][from_state] = net[i].get(from_state, 0) - int(n)
            states.add(from_state)
    series: dict[str, list[int]] = {}
    for state in sorted(states):
        values = [0] * hours
        count = current.get(state, 0)
        for i in range(hours - 1, -1, -1):
            values[i] = count
            count -= net[i].get(state, 0)
        series[state] = values
    return StateHours(starts, series)
