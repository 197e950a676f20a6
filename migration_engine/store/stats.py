"""What `status` and the batch reports need besides the counts, each as one aggregate query.

`status` must stay fast on a database of 100,000 migrations and more, so nothing here reads
rows one by one into Python: the figures are ``COUNT``/``SUM`` aggregates, the errors a
``GROUP BY`` on their code, the oldest waiting migration one ``ORDER BY ... LIMIT 1``.
All the figures of one call come from one read transaction, so they agree with each other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, case, func, or_, select, true

from migration_engine.machine import State
from migration_engine.store.database import Database
from migration_engine.store.queries import IN_CHUNK, open_state
from migration_engine.store.schema import audit_events, batches, migrations

m = migrations.c

# Where an open migration's last error counts as "an error" in `status`: it waits for a
# person (needs_attention, key_rejected), or it is retrying after a transient failure.
_WAITING_ON_ERROR = (State.NEEDS_ATTENTION.value, State.KEY_REJECTED.value)


@dataclass(frozen=True)
class BatchInfo:
    """A batch as stored: its name, when it was created, the file it came from."""

    id: int
    name: str
    created_at: datetime
    source: str | None


@dataclass(frozen=True)
class OldestWaiting:
    """The open migration that has not moved for the longest time."""

    party_id: str
    state: State
    since: datetime  # its last change


@dataclass(frozen=True)
class StatusFigures:
    """The figures of `status` that are not plain counts per state."""

    paused: int  # open migrations an operator paused
    completed_since: int  # migrations completed at or after the ``since`` asked for
    errors_by_code: dict[str, int]  # open migrations with an error, per last_error_code, most first
    oldest_waiting: OldestWaiting | None


def _in_batch(batch_name: str | None) -> Any:
    if batch_name is None:
        return true()
    return m.batch_id == select(batches.c.id).where(batches.c.name == batch_name).scalar_subquery()


def batch_info(db: Database, name: str) -> BatchInfo | None:
    """The batch called ``name``, or None when there is none."""
    query = select(batches.c.id, batches.c.name, batches.c.created_at, batches.c.source).where(batches.c.name == name)
    with db.read("read a batch") as conn:
        row = conn.execute(query).mappings().one_or_none()
    if row is None:
        return None
    return BatchInfo(id=row["id"], name=row["name"], created_at=row["created_at"], source=row["source"])


def _figures(conn: Connection, where: Any, since: datetime) -> tuple[int, int]:
    paused = func.coalesce(func.sum(case((and_(open_state(), m.paused == true()), 1), else_=0)), 0)
    done = and_(m.state == State.COMPLETED.value, m.completed_at.is_not(None), m.completed_at >= since)
    completed = func.coalesce(func.sum(case((done, 1), else_=0)), 0)
    row = conn.execute(select(paused, completed).where(where)).one()
    return int(row[0]), int(row[1])


def _errors(conn: Connection, where: Any) -> dict[str, int]:
    n = func.count().label("n")
    query = (
        select(m.last_error_code, n)
        .where(
            where,
            open_state(),
            m.last_error_code.is_not(None),
            or_(m.state.in_(_WAITING_ON_ERROR), m.attempts > 0),
        )
        .group_by(m.last_error_code)
        .order_by(n.desc(), m.last_error_code)
    )
    return {str(code): int(count) for code, count in conn.execute(query).all()}


def _oldest(conn: Connection, where: Any) -> OldestWaiting | None:
    query = select(m.party_id, m.state, m.updated_at).where(where, open_state()).order_by(m.updated_at, m.id).limit(1)
    row = conn.execute(query).one_or_none()
    if row is None:
        return None
    return OldestWaiting(party_id=row[0], state=State(row[1]), since=row[2])


def status_figures(db: Database, *, batch_name: str | None, since: datetime) -> StatusFigures:
    """Paused, completed since ``since``, errors by code and the oldest waiting, for one batch or all."""
    where = _in_batch(batch_name)
    with db.read("summarise the status") as conn:
        paused, completed = _figures(conn, where, since)
        errors = _errors(conn, where)
        oldest = _oldest(conn, where)
    return StatusFigures(paused=paused, completed_since=completed, errors_by_code=errors, oldest_waiting=oldest)


def error_event_counts(db: Database, migration_ids: list[int]) -> dict[int, int]:
    """How many ``error`` audit events (failed tries that were retried) each migration has.

    Migrations without any are left out. Asked in chunks of ids, for the report's pages.
    """
    found: dict[int, int] = {}
    with db.read("count failed tries") as conn:
        for start in range(0, len(migration_ids), IN_CHUNK):
            chunk = migration_ids[start : start + IN_CHUNK]
            query = (
                select(audit_events.c.migration_id, func.count())
                .where(audit_events.c.migration_id.in_(chunk), audit_events.c.kind == "error")
                .group_by(audit_events.c.migration_id)
            )
            for mid, count in conn.execute(query).all():
                found[int(mid)] = int(count)
    return found


def parity_details(db: Database, migration_ids: list[int]) -> dict[int, dict[str, dict[str, Any]]]:
    """Receive parity as the steps recorded it: per migration, per trigger of a move whose detail
    has ``parity`` (capabilities_applied, permissions_granted, verified, fail), the latest
    ``parity`` detail. Asked in chunks of ids, for the report's pages."""
    found: dict[int, dict[str, dict[str, Any]]] = {}
    with db.read("read parity details") as conn:
        for start in range(0, len(migration_ids), IN_CHUNK):
            chunk = migration_ids[start : start + IN_CHUNK]
            query = (
                select(audit_events.c.migration_id, audit_events.c.trigger, audit_events.c.detail)
                .where(
                    audit_events.c.migration_id.in_(chunk),
                    audit_events.c.kind.in_(("transition", "operator")),
                    audit_events.c.detail.like('%"parity"%'),
                )
                .order_by(audit_events.c.migration_id, audit_events.c.seq)
            )
            for mid, trigger, text in conn.execute(query).all():
                try:
                    value = json.loads(text).get("parity")
                except (ValueError, AttributeError):
                    continue
                if isinstance(value, dict) and trigger:
                    found.setdefault(int(mid), {})[str(trigger)] = value
    return found
