"""Writing migrations: the import (all or nothing) and the compare-and-set that moves one.

Every write is one short transaction that changes the migration row(s) and appends their
audit events together: either both are stored or neither.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from functools import lru_cache
from itertools import islice
from typing import Any

from sqlalchemy import (
    Connection,
    Integer,
    String,
    Text,
    Update,
    bindparam,
    func,
    insert,
    null,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from migration_engine.errors import ActiveMigrationExists
from migration_engine.machine import TERMINAL_STATES
from migration_engine.store.audit import event_row, insert_rows, next_rows, previous_head_hash, require_key
from migration_engine.store.database import Database
from migration_engine.store.queries import active_in, records_from
from migration_engine.store.records import UNCHANGED, Change, EventIn, MigrationRecord, NewMigration, PendingRequest
from migration_engine.store.requests import append_events
from migration_engine.store.schema import UtcDateTime, audit_events, batches, migrations

m = migrations.c

# The fields a Change may set besides the state, in the order of the dataclass.
CHANGE_FIELDS = (
    "next_run_at",
    "attempts",
    "last_error",
    "last_error_code",
    "failed_state",
    "key_ciphertext",
    "key_issued_at",
    "deadline_at",
    "paused",
    "started_at",
)
_NAMED_IN_ERROR = 20
_PENDING_FIELDS = ("pending_action", "pending_actor", "pending_at", "pending_detail")

FollowUp = Callable[[MigrationRecord, PendingRequest], Change]
"""Given a migration just moved and its pending operator request, the change that applies it."""


def _ensure_batch(db: Database, conn: Connection, name: str, source: str | None, now: datetime) -> int:
    dialect_insert = sqlite.insert if db.is_sqlite else postgresql.insert
    conn.execute(
        dialect_insert(batches)
        .values(name=name, created_at=now, source=source)
        .on_conflict_do_nothing(index_elements=[batches.c.name])
    )
    return int(conn.execute(select(batches.c.id).where(batches.c.name == name)).scalar_one())


def ensure_batch(db: Database, name: str, *, source: str | None = None) -> int:
    """The id of the batch called ``name``, created if it does not exist yet."""
    with db.write("create a batch") as conn:
        batch_id = _ensure_batch(db, conn, name, source, db.clock.now())
    db.remember_batch(batch_id, name)
    return batch_id


def _chunks(items: Iterable[NewMigration], size: int) -> Iterator[list[NewMigration]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def _refuse_open_duplicates(conn: Connection, chunk: list[NewMigration]) -> None:
    """The friendly form of the partial unique index's guard, naming the parties.

    Earlier chunks of the same import are already inserted in this transaction, so the
    lookup sees them too: a party twice in one import is caught as well.
    """
    opening = [item.party_id for item in chunk if item.state not in TERMINAL_STATES]
    twice = sorted(p for p, n in Counter(opening).items() if n > 1)
    existing = active_in(conn, opening)
    if not twice and not existing:
        return
    problems = [f"{p} (twice in this import)" for p in twice]
    problems += [
        f"{p} (open migration #{mid}, {direction}, {state})" for p, (mid, direction, state) in sorted(existing.items())
    ]
    more = len(problems) - _NAMED_IN_ERROR
    listed = "; ".join(problems[:_NAMED_IN_ERROR]) + (f"; and {more} more" if more > 0 else "")
    raise ActiveMigrationExists(f"nothing imported: these parties already have an open migration: {listed}")


def _migration_row(item: NewMigration, batch_id: int | None, now: datetime) -> dict[str, Any]:
    terminal = item.state in TERMINAL_STATES
    return {
        "batch_id": batch_id,
        "party_id": item.party_id,
        "direction": item.direction.value,
        "state": item.state.value,
        "version": 1,
        "profile": item.profile,
        "name": item.name,
        "new_provider": item.new_provider,
        "current_provider": item.current_provider,
        "key_ciphertext": item.key_ciphertext,
        "key_issued_at": item.key_issued_at,
        "next_run_at": None if terminal else item.next_run_at,
        "attempts": 0,
        "lease_owner": None,
        "lease_until": None,
        "paused": False,
        "last_error": None,
        "last_error_code": None,
        "failed_state": None,
        "deadline_at": None,
        "created_at": now,
        "updated_at": now,
        "completed_at": now if terminal else None,
        "event_seq": 1,
    }


def _created_event(item: NewMigration, batch_name: str | None, batch_id: int | None, actor: str) -> EventIn:
    """The first event of a migration: its hashed detail binds the row's party, direction and
    batch (name and id) to the chain, which `audit verify` checks the row against."""
    detail: dict[str, Any] = {
        "party_id": item.party_id,
        "direction": item.direction.value,
        "has_key": item.key_ciphertext is not None,
    }
    for name, value in (
        ("batch", batch_name),
        ("batch_id", batch_id),
        ("profile", item.profile),
        ("new_provider", item.new_provider),
        ("current_provider", item.current_provider),
    ):
        if value is not None:
            detail[name] = value
    return EventIn(kind="created", actor=actor, to_state=item.state, detail=detail)


def _new_ids(db: Database, conn: Connection, n: int) -> list[int]:
    """``n`` fresh migration ids, so a chunk goes in as one plain executemany.

    INSERT ... RETURNING over many rows is several times slower on PostgreSQL (and row by row
    on SQLite when the order must match), so ids are allocated first: from the id sequence
    on PostgreSQL, above the current maximum on SQLite, where the import holds the write lock.
    """
    if db.is_sqlite:
        top = conn.execute(select(func.coalesce(func.max(m.id), 0))).scalar_one()
        return list(range(top + 1, top + n + 1))
    sequence = func.pg_get_serial_sequence(migrations.name, m.id.name)
    allocate = select(func.nextval(sequence)).select_from(func.generate_series(1, n))
    return [int(i) for i in conn.execute(allocate).scalars()]


def add_migrations(
    db: Database,
    *,
    batch_name: str | None,
    items: Iterable[NewMigration],
    actor: str,
    chunk_size: int = 1000,
    batch_source: str | None = None,
    seal: Callable[[int, str], str | None] | None = None,
    then: Callable[[Connection, datetime], object] | None = None,
) -> int:
    """Insert every item, each with its ``created`` event, in ONE transaction; return how many.

    ``items`` is streamed and inserted ``chunk_size`` rows at a time (executemany), so a
    100k-row import never sits in memory twice. Any open migration of a party already in
    the store, or a party twice in ``items``, rolls back everything, the new batch included
    (``batch_source``, e.g. the file name, is recorded when the batch is new).
    ``seal(migration_id, party_id)``, when given, is each row's key ciphertext (or None),
    called once the row's id is allocated, before the row is written. ``then(conn, now)``,
    when given, runs last in the same transaction (the import's batch schedule: no migration of
    the batch is claimable before its schedule holds).
    """
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    key = require_key(db)  # refused before anything is written
    now = db.clock.now()
    total = 0
    batch_id: int | None = None
    with db.write("import migrations") as conn:
        if batch_name is not None:
            batch_id = _ensure_batch(db, conn, batch_name, batch_source, now)
        for chunk in _chunks(items, chunk_size):
            _refuse_open_duplicates(conn, chunk)
            ids = _new_ids(db, conn, len(chunk))
            if seal is not None:  # a key is bound to its migration id, known only now
                chunk = [
                    replace(item, key_ciphertext=seal(mid, item.party_id)) for mid, item in zip(ids, chunk, strict=True)
                ]
            conn.execute(
                insert(migrations),
                [_migration_row(item, batch_id, now) | {"id": mid} for mid, item in zip(ids, chunk, strict=True)],
            )
            events = [
                event_row(
                    migration_id=mid,
                    seq=1,
                    at=now,
                    prev_hash="",
                    event=_created_event(item, batch_name, batch_id, actor),
                    key=key,
                )
                for mid, item in zip(ids, chunk, strict=True)
            ]
            conn.execute(insert(audit_events), events)
            total += len(chunk)
        if then is not None:
            then(conn, now)
    if batch_id is not None and batch_name is not None:
        db.remember_batch(batch_id, batch_name)  # only once committed: SQLite may reuse a rolled-back id
    return total


def _set_values(change: Change) -> dict[str, Any]:
    """The columns this change sets besides the bookkeeping, with their values."""
    values: dict[str, Any] = {}
    for name in CHANGE_FIELDS:
        value = getattr(change, name)
        if value is not UNCHANGED:
            values[name] = value.value if name == "failed_state" and value is not None else value
    if change.new_state is not None:
        values["state"] = change.new_state.value
        if change.new_state in TERMINAL_STATES and change.next_run_at is UNCHANGED:
            values["next_run_at"] = None  # nothing runs in a terminal state
    if change.clear_pending:
        values.update(dict.fromkeys(_PENDING_FIELDS))
    return values


@lru_cache(maxsize=256)
def _cas_statement(columns: frozenset[str], check_owner: bool, completes: bool) -> Update:
    """The compare-and-set UPDATE for one shape of change, built once and reused.

    The hot path runs it thousands of times a minute; building the statement anew each time
    costs more than running it on SQLite. Values travel as bind parameters.
    """
    now = bindparam("now", type_=UtcDateTime())
    values: dict[str, Any] = {
        "version": m.version + 1,
        "lease_owner": null(),
        "lease_until": null(),
        "updated_at": now,
        "event_seq": m.event_seq + bindparam("n_events", type_=Integer()),
    }
    for name in sorted(columns):
        values[name] = bindparam(f"set_{name}", type_=migrations.c[name].type)
    if completes:
        values["completed_at"] = now
    where = [
        m.id == bindparam("match_id", type_=Integer()),
        m.state == bindparam("match_state", type_=String()),
        m.version == bindparam("match_version", type_=Integer()),
    ]
    if check_owner:
        where.append(m.lease_owner == bindparam("match_owner", type_=Text()))
    head_hash = previous_head_hash(bindparam("match_id"), bindparam("n_events"))
    return update(migrations).where(*where).values(values).returning(*migrations.c, head_hash)


def apply(db: Database, change: Change) -> MigrationRecord | None:
    """One compare-and-set on ``(id, state, version[, lease owner])`` with its audit events.

    Returns the migration as it now is, or ``None`` when the row no longer matches (another
    worker or an operator moved it): then nothing is written.
    """
    return apply_many(db, [change])[0]


def apply_many(
    db: Database, changes: Sequence[Change], *, follow_up: FollowUp | None = None
) -> list[MigrationRecord | None]:
    """``apply`` for several changes in ONE transaction (group commit): each is still its own
    compare-and-set with the same result as ``apply``'s; their audit events go in with one
    executemany; a database error stores none of them.

    A change whose compare-and-set fails still appends its ``if_stale`` events (no state
    change). With ``follow_up``, a moved row that carries a pending operator request gets that
    request applied right after, in the same transaction (the record returned is the final one);
    the RETURNING row already holds the request, so the happy path reads nothing more."""
    if not changes:
        return []
    action = f"apply a change to migration {changes[0].migration_id}" if len(changes) == 1 else "apply changes"
    with db.write(action) as conn:
        now = db.clock.now()
        events: list[dict[str, Any]] = []
        results = [_apply_in(db, conn, change, now, events, follow_up) for change in changes]
        insert_rows(conn, events)
        return results


def _apply_in(
    db: Database,
    conn: Connection,
    change: Change,
    now: datetime,
    event_rows: list[dict[str, Any]],
    follow_up: FollowUp | None = None,
) -> MigrationRecord | None:
    """The compare-and-set of one change (and of the pending request it lets through);
    its audit rows are added to ``event_rows``."""
    first = len(event_rows)
    record = _cas_in(db, conn, change, now, event_rows, None)
    if record is None:
        if change.if_stale:
            append_events(
                db, conn, migration_id=change.migration_id, events=list(change.if_stale), now=now, event_rows=event_rows
            )
        return None
    if follow_up is None or record.pending is None or change.clear_pending:
        return record
    then = replace(follow_up(record, record.pending), clear_pending=True)
    # The first change's events are not inserted yet: chain on from the last of them.
    head = event_rows[-1]["hash"] if len(event_rows) > first else None
    return _cas_in(db, conn, then, now, event_rows, head) or record


def _cas_in(
    db: Database,
    conn: Connection,
    change: Change,
    now: datetime,
    event_rows: list[dict[str, Any]],
    head_hash: str | None,
) -> MigrationRecord | None:
    """One compare-and-set; ``head_hash`` when the chain's head is not in the table yet."""
    events = list(change.events)
    values = _set_values(change)
    completes = change.new_state is not None and change.new_state in TERMINAL_STATES
    stmt = _cas_statement(frozenset(values), change.lease_owner is not None, completes)
    params: dict[str, Any] = {f"set_{name}": value for name, value in values.items()}
    params.update(
        now=now,
        n_events=len(events),
        match_id=change.migration_id,
        match_state=change.expected_state.value,
        match_version=change.expected_version,
    )
    if change.lease_owner is not None:
        params["match_owner"] = change.lease_owner
    row = conn.execute(stmt, params).mappings().one_or_none()
    if row is None:
        return None  # no match: the UPDATE wrote nothing, there is nothing to undo
    if events:
        head = row["event_seq"] - len(events)
        event_rows += next_rows(
            conn,
            migration_id=change.migration_id,
            head_seq=head,
            at=now,
            events=events,
            key=require_key(db),
            head_hash=head_hash or row["head_hash"],
        )
    return records_from(db, conn, [row])[0]
