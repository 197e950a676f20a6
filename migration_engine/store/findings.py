"""The reconciler's findings: what it selects, what it found before, what it records.

A finding is one row per (migration, kind) holding its current state (``open`` or
``cleared``) and what was seen (``signature``), so a run records only what is new, changed,
cleared or due again; every such record is also a ``finding`` audit event appended to the
migration's chain in the same transaction, the migration's state and version untouched
(``requests.append_events``). `status` reads the open ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, true, update

from migration_engine.machine import Direction, State
from migration_engine.store.audit import insert_rows
from migration_engine.store.database import Database
from migration_engine.store.queries import IN_CHUNK, RECORD_COLUMNS, open_state, to_record
from migration_engine.store.records import EventIn, MigrationRecord
from migration_engine.store.requests import append_events
from migration_engine.store.schema import batches, findings, migrations

f, m = findings.c, migrations.c
OPEN, CLEARED = "open", "cleared"


@dataclass(frozen=True)
class FindingState:
    """A finding as stored: its migration and kind, whether it is open, what was seen, when."""

    migration_id: int
    kind: str
    status: str  # open | cleared
    signature: str
    summary: str
    first_seen_at: datetime
    recorded_at: datetime
    cleared_at: datetime | None


@dataclass(frozen=True)
class FindingWrite:
    """A finding to record: the row's new state and the audit event that says so."""

    migration_id: int
    kind: str
    status: str  # open | cleared
    signature: str
    summary: str
    event: EventIn


@dataclass(frozen=True)
class OpenFinding:
    """An open finding as `status` shows it."""

    migration_id: int
    party_id: str
    direction: Direction
    state: State
    batch_name: str | None
    kind: str
    summary: str
    since: datetime  # first seen


@dataclass(frozen=True)
class FindingsSummary:
    """Open findings: how many per kind, and the first few (oldest first)."""

    by_kind: dict[str, int]
    first: list[OpenFinding]

    @property
    def total(self) -> int:
        return sum(self.by_kind.values())


def _watched(completed_since: datetime) -> Any:
    """Open migrations, and those completed at or after ``completed_since``."""
    recent = and_(m.state == State.COMPLETED.value, m.completed_at.is_not(None), m.completed_at >= completed_since)
    return or_(open_state(), recent)


def _in_batch(batch_name: str | None) -> Any:
    if batch_name is None:
        return true()
    return m.batch_id == select(batches.c.id).where(batches.c.name == batch_name).scalar_subquery()


def watched_page(
    db: Database, *, after_id: int, limit: int, completed_since: datetime, batch_name: str | None = None
) -> list[MigrationRecord]:
    """The next ``limit`` migrations (id order, after ``after_id``) the reconciler looks at."""
    query = (
        select(*RECORD_COLUMNS, batches.c.name.label("batch_name"))
        .select_from(migrations.outerjoin(batches, m.batch_id == batches.c.id))
        .where(m.id > after_id, _watched(completed_since), _in_batch(batch_name))
        .order_by(m.id)
        .limit(limit)
    )
    with db.read("select migrations to reconcile") as conn:
        return [to_record(row, row["batch_name"]) for row in conn.execute(query).mappings()]


def _state(row: Any) -> FindingState:
    return FindingState(**{c.name: row[c.name] for c in findings.c})


def states_of(db: Database, migration_ids: Sequence[int]) -> dict[int, dict[str, FindingState]]:
    """The stored findings of these migrations: migration id -> kind -> state."""
    found: dict[int, dict[str, FindingState]] = {}
    with db.read("read findings") as conn:
        for start in range(0, len(migration_ids), IN_CHUNK):
            chunk = list(migration_ids[start : start + IN_CHUNK])
            for row in conn.execute(select(findings).where(f.migration_id.in_(chunk))).mappings():
                state = _state(row)
                found.setdefault(state.migration_id, {})[state.kind] = state
    return found


def unwatched_open(db: Database, *, completed_since: datetime, batch_name: str | None = None) -> list[FindingState]:
    """Open findings of migrations the reconciler no longer looks at (cancelled, or completed
    before ``completed_since``): it clears them."""
    query = (
        select(findings)
        .select_from(findings.join(migrations, f.migration_id == m.id))
        .where(f.status == OPEN, ~_watched(completed_since), _in_batch(batch_name))
        .order_by(f.migration_id, f.kind)
    )
    with db.read("read unwatched findings") as conn:
        return [_state(row) for row in conn.execute(query).mappings()]


def record(db: Database, writes: Iterable[FindingWrite]) -> None:
    """Store each finding's new state with its audit event, all in one transaction."""
    writes = list(writes)
    if not writes:
        return
    with db.write("record findings") as conn:
        now = db.clock.now()
        event_rows: list[dict[str, Any]] = []
        for w in writes:
            key = and_(f.migration_id == w.migration_id, f.kind == w.kind)
            old = conn.execute(select(f.status, f.first_seen_at).where(key)).one_or_none()
            values: dict[str, Any] = {
                "status": w.status,
                "signature": w.signature,
                "summary": w.summary,
                "recorded_at": now,
                "cleared_at": now if w.status == CLEARED else None,
            }
            if old is None:
                row = {"migration_id": w.migration_id, "kind": w.kind, "first_seen_at": now, **values}
                conn.execute(insert(findings).values(row))
            else:
                if w.status == OPEN and old[0] != OPEN:
                    values["first_seen_at"] = now  # it came back: a new episode
                conn.execute(update(findings).where(key).values(**values))
            # Each migration's events go in one by one: two findings of one migration chain on.
            append_events(db, conn, migration_id=w.migration_id, events=[w.event], now=now, event_rows=event_rows)
            insert_rows(conn, event_rows)
            event_rows.clear()


def open_summary(db: Database, *, batch_name: str | None = None, first: int = 5) -> FindingsSummary:
    """Open findings per kind and the ``first`` oldest, for one batch or all."""
    joined = findings.join(migrations, f.migration_id == m.id).outerjoin(batches, m.batch_id == batches.c.id)
    where = and_(f.status == OPEN, _in_batch(batch_name))
    n = func.count().label("n")
    with db.read("summarise open findings") as conn:
        per_kind = select(f.kind, n).select_from(joined).where(where).group_by(f.kind).order_by(f.kind)
        counts = conn.execute(per_kind).all()
        rows = conn.execute(
            select(f.migration_id, f.kind, f.summary, f.first_seen_at, m.party_id, m.direction, m.state, batches.c.name)
            .select_from(joined)
            .where(where)
            .order_by(f.first_seen_at, f.migration_id, f.kind)
            .limit(first)
        ).all()
    return FindingsSummary(
        by_kind={str(kind): int(count) for kind, count in counts},
        first=[
            OpenFinding(
                migration_id=int(mid),
                party_id=str(party),
                direction=Direction(direction),
                state=State(state),
                batch_name=batch,
                kind=str(kind),
                summary=str(summary),
                since=since,
            )
            for mid, kind, summary, since, party, direction, state, batch in rows
        ],
    )
