"""Reading migrations: one, a party's, a batch's, and the counts per state."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import Connection, RowMapping, Select, func, select

from migration_engine.machine import TERMINAL_STATES, Direction, State
from migration_engine.store.database import Database
from migration_engine.store.records import MigrationRecord, PendingRequest
from migration_engine.store.schema import batches, migrations

# Bound parameters per IN (...) list: far below SQLite's and PostgreSQL's limits.
IN_CHUNK = 500
_LIST_PAGE = 1000

# The record's columns: everything but the audit chain's head, which stays inside the store.
RECORD_COLUMNS = tuple(c for c in migrations.c if c.name != "event_seq")
_TERMINAL_VALUES = tuple(sorted(s.value for s in TERMINAL_STATES))


def open_state() -> Any:
    """``state`` is not terminal: the rows the partial unique index covers."""
    return migrations.c.state.not_in(_TERMINAL_VALUES)


def to_record(row: RowMapping, batch_name: str | None) -> MigrationRecord:
    failed = row["failed_state"]
    return MigrationRecord(
        id=row["id"],
        batch_id=row["batch_id"],
        batch_name=batch_name,
        party_id=row["party_id"],
        direction=Direction(row["direction"]),
        state=State(row["state"]),
        version=row["version"],
        profile=row["profile"],
        name=row["name"],
        new_provider=row["new_provider"],
        current_provider=row["current_provider"],
        key_ciphertext=row["key_ciphertext"],
        key_issued_at=row["key_issued_at"],
        next_run_at=row["next_run_at"],
        attempts=row["attempts"],
        lease_owner=row["lease_owner"],
        lease_until=row["lease_until"],
        paused=bool(row["paused"]),
        last_error=row["last_error"],
        last_error_code=row["last_error_code"],
        failed_state=State(failed) if failed is not None else None,
        deadline_at=row["deadline_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        completed_at=row["completed_at"],
        pending=pending_of(row),
        started_at=row.get("started_at"),
    )


def pending_of(row: RowMapping) -> PendingRequest | None:
    """The row's pending operator request, if any (rows read without those columns have none)."""
    action = row.get("pending_action")
    if action is None:
        return None
    detail = json.loads(row["pending_detail"]) if row.get("pending_detail") else {}
    return PendingRequest(action=action, actor=row["pending_actor"] or "", at=row["pending_at"], detail=detail)


def records_from(db: Database, conn: Connection, rows: Iterable[RowMapping]) -> list[MigrationRecord]:
    """Records for rows of ``migrations`` alone (e.g. from RETURNING): batch names from the cache."""
    return [to_record(row, db.batch_name(conn, row["batch_id"])) for row in rows]


def _with_batch() -> Select[Any]:
    return select(*RECORD_COLUMNS, batches.c.name.label("batch_name")).select_from(
        migrations.outerjoin(batches, migrations.c.batch_id == batches.c.id)
    )


def _joined(rows: Iterable[RowMapping]) -> list[MigrationRecord]:
    return [to_record(row, row["batch_name"]) for row in rows]


def get(db: Database, migration_id: int) -> MigrationRecord | None:
    with db.read("read a migration") as conn:
        found = _joined(conn.execute(_with_batch().where(migrations.c.id == migration_id)).mappings())
    return found[0] if found else None


def find_party(db: Database, party_id: str) -> list[MigrationRecord]:
    with db.read("find a party's migrations") as conn:
        rows = conn.execute(
            _with_batch()
            .where(migrations.c.party_id == party_id)
            .order_by(migrations.c.created_at.desc(), migrations.c.id.desc())
        ).mappings()
        return _joined(rows)


def list_migrations(
    db: Database, *, batch_name: str | None = None, states: Iterable[State] | None = None
) -> Iterator[MigrationRecord]:
    """Migrations in id order, read a page at a time (no transaction held while the caller works)."""
    query = _with_batch()
    if batch_name is not None:
        query = query.where(batches.c.name == batch_name)
    if states is not None:
        wanted = sorted({State(s).value for s in states})
        if not wanted:
            return
        query = query.where(migrations.c.state.in_(wanted))
    last_id = 0
    while True:
        with db.read("list migrations") as conn:
            page = _joined(
                conn.execute(query.where(migrations.c.id > last_id).order_by(migrations.c.id).limit(_LIST_PAGE))
                .mappings()
                .all()
            )
        yield from page
        if len(page) < _LIST_PAGE:
            return
        last_id = page[-1].id


def counts(db: Database, *, batch_name: str | None = None) -> list[tuple[Direction, State, int]]:
    """How many migrations per (direction, state), sorted; one GROUP BY over an index."""
    query = select(migrations.c.direction, migrations.c.state, func.count().label("n"))
    if batch_name is not None:
        batch_id = select(batches.c.id).where(batches.c.name == batch_name).scalar_subquery()
        query = query.where(migrations.c.batch_id == batch_id)
    query = query.group_by(migrations.c.direction, migrations.c.state)
    with db.read("count migrations") as conn:
        rows = conn.execute(query).all()
    result = [(Direction(d), State(s), int(n)) for d, s, n in rows]
    return sorted(result, key=lambda t: (t[0].value, t[1].value))


def active_in(conn: Connection, party_ids: Iterable[str]) -> dict[str, tuple[int, str, str]]:
    """The open migrations of these parties: party id -> (migration id, direction, state)."""
    wanted = list(dict.fromkeys(party_ids))
    found: dict[str, tuple[int, str, str]] = {}
    for start in range(0, len(wanted), IN_CHUNK):
        chunk = wanted[start : start + IN_CHUNK]
        rows = conn.execute(
            select(migrations.c.party_id, migrations.c.id, migrations.c.direction, migrations.c.state).where(
                migrations.c.party_id.in_(chunk), open_state()
            )
        )
        for party_id, mid, direction, state in rows:
            found[party_id] = (mid, direction, state)
    return found


def active_party_ids(db: Database, party_ids: Iterable[str]) -> set[str]:
    with db.read("look up open migrations") as conn:
        return set(active_in(conn, party_ids))


def a_stored_key(db: Database) -> str | None:
    """The ciphertext of one stored key (an open migration's if any), to check a key-encryption key."""
    query = (
        select(migrations.c.key_ciphertext)
        .where(migrations.c.key_ciphertext.is_not(None))
        .order_by(open_state().desc(), migrations.c.id.desc())
        .limit(1)
    )
    with db.read("read a stored key") as conn:
        value = conn.execute(query).scalar_one_or_none()
    return None if value is None else str(value)
