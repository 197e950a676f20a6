"""Batch schedules: stored on the batch row, audited on the batch's open migrations.

A schedule (``migration_engine.schedule.BatchSchedule``) is one canonical JSON text in
``batches.schedule`` (NULL: unscheduled, starts at once and as fast as the worker goes), its
priority also in ``batches.priority`` so that claiming can order by it in SQL, and who set it
and when in ``schedule_set_by`` / ``schedule_set_at``.

The audit trail is per migration (``audit.py``), so a change of a batch's schedule is recorded
as an ``operator`` event (detail ``action: schedule``, the batch, the new and the previous
schedule) appended to the chain of every open migration of the batch, in the same transaction
as the row's change: ``audit verify`` covers it like any other event, and a migration's trail
says under which schedule it started. The append is done a page of migrations at a time, one
UPDATE ... RETURNING per page (the chain heads) and one insert of the events, so a batch of
100k open migrations is one transaction of a few seconds. Finished migrations get no event.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cache, lru_cache
from typing import Any

from sqlalchemy import Connection, Integer, Update, bindparam, literal_column, select, update

from migration_engine.errors import InputError, StoreError
from migration_engine.schedule import BatchSchedule
from migration_engine.store.audit import insert_rows, next_rows, previous_head_hash, require_key
from migration_engine.store.database import Database
from migration_engine.store.queries import open_state
from migration_engine.store.records import EventIn
from migration_engine.store.schema import batches, migrations

b = batches.c
m = migrations.c
SCHEDULE_ACTION = "schedule"  # the ``action`` of the operator events that record a change
_PAGE = 1000


@dataclass(frozen=True)
class ScheduledBatch:
    """A batch and its stored schedule (None: unscheduled), with who set it and when."""

    batch_id: int
    batch_name: str
    schedule: BatchSchedule | None
    set_at: datetime | None
    set_by: str | None


@dataclass(frozen=True)
class ScheduleChange:
    """What ``set_schedule`` did: the batch as now stored, the schedule before, and on how many
    open migrations' audit chains the change was recorded."""

    batch: ScheduledBatch
    previous: BatchSchedule | None
    audited: int

    @property
    def changed(self) -> bool:
        return self.batch.schedule != self.previous


@lru_cache(maxsize=256)
def _parsed(text: str, batch_name: str) -> BatchSchedule:
    """A stored schedule, parsed once per distinct text (the engine reads them on every claim)."""
    try:
        return BatchSchedule.from_json(text, where=f"the stored schedule of batch {batch_name!r}")
    except InputError as exc:
        raise StoreError(f"{exc}: set it again with `peppol-migrate batch schedule {batch_name} ...`") from None


def _schedule_of(text: str | None, batch_name: str) -> BatchSchedule | None:
    return None if text is None else _parsed(text, batch_name)


def _scheduled(row: Any) -> ScheduledBatch:
    return ScheduledBatch(
        batch_id=int(row.id),
        batch_name=str(row.name),
        schedule=_schedule_of(row.schedule, row.name),
        set_at=row.schedule_set_at,
        set_by=row.schedule_set_by,
    )


_COLUMNS = (b.id, b.name, b.schedule, b.schedule_set_at, b.schedule_set_by)


def read(db: Database, batch_name: str) -> ScheduledBatch | None:
    """Batch ``batch_name`` with its schedule; None when there is no such batch."""
    with db.read("read a batch's schedule") as conn:
        row = conn.execute(select(*_COLUMNS).where(b.name == batch_name)).one_or_none()
    return None if row is None else _scheduled(row)


def scheduled(db: Database) -> list[ScheduledBatch]:
    """Every batch that has a schedule, by name."""
    with db.read("read the batch schedules") as conn:
        rows = conn.execute(select(*_COLUMNS).where(b.schedule.is_not(None)).order_by(b.name)).all()
    return [_scheduled(row) for row in rows]


def by_batch_id(db: Database) -> dict[int, BatchSchedule]:
    """Batch id -> schedule, for every scheduled batch: one query on the (small) batches table."""
    with db.read("read the batch schedules") as conn:
        rows = conn.execute(select(b.id, b.name, b.schedule).where(b.schedule.is_not(None))).all()
    return {int(bid): _parsed(str(text), str(name)) for bid, name, text in rows}


@cache
def _append_one_each() -> Update:
    """Advance the chain head of each listed migration by one, returning its id, new head seq
    and the old head's hash (None when the caller must look it up)."""
    row_id = literal_column(f"{migrations.name}.{m.id.name}", Integer())
    head_hash = previous_head_hash(row_id, 1)
    return (
        update(migrations)
        .where(m.id.in_(bindparam("ids", expanding=True)))
        .values(event_seq=m.event_seq + 1)
        .returning(m.id, m.event_seq, head_hash)
    )


def _open_ids(conn: Connection, batch_id: int) -> Iterable[list[int]]:
    after = 0
    while True:
        page = [
            int(i)
            for i in conn.execute(
                select(m.id).where(m.batch_id == batch_id, open_state(), m.id > after).order_by(m.id).limit(_PAGE)
            ).scalars()
        ]
        if not page:
            return
        yield page
        after = page[-1]


def _audit(db: Database, conn: Connection, batch_id: int, event: EventIn, now: datetime) -> int:
    key = require_key(db)
    n = 0
    for ids in _open_ids(conn, batch_id):
        rows: list[dict[str, Any]] = []
        for mid, seq, head_hash in conn.execute(_append_one_each(), {"ids": ids}).all():
            rows += next_rows(
                conn, migration_id=int(mid), head_seq=int(seq) - 1, at=now, events=[event], key=key, head_hash=head_hash
            )
        insert_rows(conn, rows)
        n += len(ids)
    return n


@dataclass
class ScheduleToSet:
    """A schedule to set in an import's transaction (``Store.add_migrations(schedule=...)``);
    ``change`` says what it did once the import ran."""

    schedule: BatchSchedule | None
    actor: str
    change: ScheduleChange | None = None


def set_schedule(db: Database, batch_name: str, schedule: BatchSchedule | None, *, actor: str) -> ScheduleChange:
    """Store ``schedule`` (None: clear it) on batch ``batch_name`` and record the change on its
    open migrations' audit chains, all in one transaction; ``InputError`` for an unknown batch.
    Setting the schedule a batch already has writes nothing."""
    require_key(db)  # refused before anything is written
    with db.write("set a batch's schedule") as conn:
        return set_schedule_in(db, conn, batch_name, schedule, actor=actor, now=db.clock.now())


def set_schedule_in(
    db: Database, conn: Connection, batch_name: str, schedule: BatchSchedule | None, *, actor: str, now: datetime
) -> ScheduleChange:
    """``set_schedule`` inside a transaction the caller holds (the import's, so a new batch's
    migrations are never claimable unpaced). Migrations of the batch that have not started and
    wait for a later time (held by the old schedule) become due now, so the gate decides anew
    under the new one: a schedule that opens earlier takes effect at once."""
    row = conn.execute(select(*_COLUMNS).where(b.name == batch_name)).one_or_none()
    if row is None:
        raise InputError(f"there is no batch named {batch_name!r}")
    before = _scheduled(row)
    if before.schedule == schedule:
        return ScheduleChange(batch=before, previous=before.schedule, audited=0)
    conn.execute(
        update(batches)
        .where(b.id == before.batch_id)
        .values(
            schedule=None if schedule is None else schedule.to_json(),
            priority=0 if schedule is None else schedule.priority,
            schedule_set_at=now,
            schedule_set_by=actor,
        )
    )
    conn.execute(
        update(migrations)
        .where(m.batch_id == before.batch_id, m.started_at.is_(None), open_state(), m.next_run_at > now)
        .values(next_run_at=now)
    )
    event = EventIn(
        kind="operator",
        actor=actor,
        detail={
            "action": SCHEDULE_ACTION,
            "batch": batch_name,
            "batch_id": before.batch_id,
            "schedule": None if schedule is None else schedule.as_dict(),
            "previous": None if before.schedule is None else before.schedule.as_dict(),
        },
    )
    audited = _audit(db, conn, before.batch_id, event, now)
    after = ScheduledBatch(
        batch_id=before.batch_id, batch_name=batch_name, schedule=schedule, set_at=now, set_by=actor
    )
    return ScheduleChange(batch=after, previous=before.schedule, audited=audited)
