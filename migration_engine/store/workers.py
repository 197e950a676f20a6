"""Worker processes' heartbeats and circuit breakers, so `status` (another process) sees them.

Each worker upserts its own row (one short write); nothing else writes it. Rows are kept
after a worker stops, so an operator also sees workers that were killed (no ``stopped_at``,
``alive_until`` passed); ``recent`` reads the ones heard of since a given time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, select
from sqlalchemy.dialects import postgresql, sqlite

from migration_engine.store.database import Database
from migration_engine.store.records import WorkerStatus
from migration_engine.store.schema import workers

_COLUMNS = tuple(column.name for column in workers.c)
_UPDATED = ("heartbeat_at", "alive_until", "stopped_at", "circuit", "circuit_reason", "steps_run")


def record(db: Database, status: WorkerStatus) -> None:
    """Insert or update the worker's row (``started_at`` is kept from the first write)."""
    dialect_insert: Any = sqlite.insert if db.is_sqlite else postgresql.insert
    values = {name: getattr(status, name) for name in _COLUMNS}
    stmt = dialect_insert(workers).values(values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[workers.c.worker_id], set_={name: stmt.excluded[name] for name in _UPDATED}
    )
    with db.write("record a worker's heartbeat") as conn:
        conn.execute(stmt)


def _to_status(row: RowMapping) -> WorkerStatus:
    return WorkerStatus(**{name: row[name] for name in _COLUMNS})


def recent(db: Database, *, since: datetime) -> list[WorkerStatus]:
    """Workers whose last heartbeat is at or after ``since``, most recent first."""
    query = select(workers).where(workers.c.heartbeat_at >= since).order_by(workers.c.heartbeat_at.desc())
    with db.read("list workers") as conn:
        return [_to_status(row) for row in conn.execute(query).mappings()]
