"""Writes that add to a migration's audit chain without moving it (no version bump).

- ``request_action``: an operator's action on a migration whose step is in flight is stored
  as the row's pending request (and audited as requested); the worker applies it after the
  step's outcome (``moves.apply_many``'s ``follow_up``). Not bumping the version is the point:
  the step's result still applies, so what the step did remotely is what the state says.
- ``append_events``: the events of a change whose compare-and-set failed (a step's calls, when
  its lease was lost) are appended all the same: every remote side effect is recorded.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, Integer, String, Text, Update, bindparam, update

from migration_engine.store.audit import insert_rows, next_rows, previous_head_hash, require_key
from migration_engine.store.database import Database
from migration_engine.store.queries import records_from
from migration_engine.store.records import EventIn, MigrationRecord, PendingRequest
from migration_engine.store.schema import UtcDateTime, migrations

m = migrations.c


@cache
def _append_statement(request: bool) -> Update:
    """Advance the chain head by ``n_events`` (and, for a request, set the pending columns if the
    row is still in flight at the version read and has no request yet), returning the old head's hash."""
    values: dict[str, Any] = {"event_seq": m.event_seq + bindparam("n_events", type_=Integer())}
    where = [m.id == bindparam("match_id", type_=Integer())]
    if request:
        values.update(
            pending_action=bindparam("p_action", type_=String()),
            pending_actor=bindparam("p_actor", type_=Text()),
            pending_at=bindparam("now", type_=UtcDateTime()),
            pending_detail=bindparam("p_detail", type_=Text()),
        )
        where += [
            m.version == bindparam("match_version", type_=Integer()),
            m.pending_action.is_(None),
            m.lease_owner.is_not(None),
            m.lease_until > bindparam("now", type_=UtcDateTime()),
        ]
    head_hash = previous_head_hash(bindparam("match_id"), bindparam("n_events"))
    return update(migrations).where(*where).values(values).returning(*migrations.c, head_hash)


def append_events(
    db: Database,
    conn: Connection, *, migration_id: int, events: list[EventIn], now: datetime, event_rows: list[dict[str, Any]]
) -> None:
    """Inside a write: append ``events`` to the migration's chain, its state untouched; the rows
    are added to ``event_rows`` for the caller's one insert."""
    if not events:
        return
    params = {"match_id": migration_id, "n_events": len(events)}
    row = conn.execute(_append_statement(False), params).mappings().one_or_none()
    if row is None:
        return  # no such migration: nothing to append to
    event_rows += next_rows(
        conn,
        migration_id=migration_id,
        head_seq=row["event_seq"] - len(events),
        at=now,
        events=events,
        key=require_key(db),
        head_hash=row["head_hash"],
    )


def request_action(
    db: Database, *, migration_id: int, version: int, request: PendingRequest, event: EventIn
) -> MigrationRecord | None:
    """Store ``request`` as the row's pending action with its audit ``event``, if the row is still
    at ``version``, leased (lease not run out) and has no request yet; else write nothing, None."""
    with db.write("request an operator action") as conn:
        now = db.clock.now()
        params = {
            "match_id": migration_id,
            "match_version": version,
            "n_events": 1,
            "now": now,
            "p_action": request.action,
            "p_actor": request.actor,
            "p_detail": json.dumps(dict(request.detail), sort_keys=True),
        }
        row = conn.execute(_append_statement(True), params).mappings().one_or_none()
        if row is None:
            return None
        rows = next_rows(
            conn,
            migration_id=migration_id,
            head_seq=row["event_seq"] - 1,
            at=now,
            events=[event],
            key=require_key(db),
            head_hash=row["head_hash"],
        )
        insert_rows(conn, rows)
        return records_from(db, conn, [row])[0]
