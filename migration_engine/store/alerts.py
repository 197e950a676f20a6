"""Alerts' tables: the producer's cursor over the audit events, the alerts waiting for their
digest, the outbox of messages and their delivery state per destination.

Every step is one short transaction, so a worker that dies between two loses nothing and
repeats nothing: the cursor moves in the transaction that writes the alerts it read; alerts
join a message in the transaction that writes the message and its deliveries; a delivery is
marked delivered only after the receiver said 2xx (so at least once; a receiver dedupes by the
message's ``uid``).

Audit event ids are handed out before their transaction commits, so on PostgreSQL a lower id
may become visible after a higher one. The producer never reads past a gap in the ids younger
than ``settle_s`` (the event after it was written less than that ago): the missing event may
still commit. An older gap is a rolled-back transaction and is passed.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, update

from migration_engine.machine import TERMINAL_STATES
from migration_engine.store.database import Database
from migration_engine.store.schema import (
    alert_cursor,
    alert_deliveries,
    alert_messages,
    alerts,
    audit_events,
    batches,
    migrations,
)

CURSOR = "audit_events"
_TERMINAL = sorted(s.value for s in TERMINAL_STATES)


@dataclass(frozen=True)
class SourceEvent:
    """An audit event the producer looks at, with its migration's party and batch."""

    id: int
    at: datetime
    kind: str
    migration_id: int
    from_state: str | None
    to_state: str | None
    detail: dict[str, Any]
    party_id: str
    batch_id: int | None
    batch_name: str | None


@dataclass(frozen=True)
class AlertIn:
    """One thing to tell, before its digest."""

    kind: str
    digest_key: str
    summary: str
    occurred_at: datetime
    batch_name: str | None = None
    party_id: str | None = None
    migration_id: int | None = None
    event_id: int | None = None


@dataclass(frozen=True)
class AlertRow:
    id: int
    created_at: datetime
    occurred_at: datetime
    kind: str
    digest_key: str
    batch_name: str | None
    party_id: str | None
    migration_id: int | None
    summary: str


@dataclass(frozen=True)
class PendingGroup:
    """Alerts of one digest key not yet in a message: how many, since when."""

    digest_key: str
    count: int
    first_created_at: datetime


@dataclass(frozen=True)
class Delivery:
    """A message to send to one destination (its body as stored)."""

    message_id: int
    uid: str
    kind: str
    destination: str
    attempts: int
    payload: str


@dataclass(frozen=True)
class MessageState:
    """A message of the outbox with its deliveries, for `alerts list`."""

    id: int
    uid: str
    created_at: datetime
    kind: str
    digest_key: str
    count: int
    deliveries: tuple[tuple[str, int, datetime | None, datetime | None, str | None], ...]


# ---- the producer ---------------------------------------------------------------------------


def cursor(db: Database) -> int:
    """How far the producer has read (0 when the row is missing)."""
    with db.read("read the alerts' cursor") as conn:
        value = conn.execute(select(alert_cursor.c.position).where(alert_cursor.c.name == CURSOR)).scalar()
    return int(value or 0)


def events_after(
    db: Database, after: int, *, limit: int, settle_s: float, to_states: Sequence[str], kinds: Sequence[str]
) -> tuple[list[SourceEvent], int]:
    """The events after ``after`` that move into one of ``to_states`` or are of one of ``kinds``,
    up to the first gap still young; and the position the cursor may move to."""
    now = db.clock.now()
    e = audit_events.c
    with db.read("read audit events for alerts") as conn:
        ids = conn.execute(select(e.id, e.at).where(e.id > after).order_by(e.id).limit(limit)).all()
        upto = after
        for event_id, at in ids:
            if event_id != upto + 1 and at > now - timedelta(seconds=settle_s):
                break  # an earlier id may still commit: read it next time
            upto = event_id
        if upto == after:
            return [], after
        rows = conn.execute(
            select(
                e.id, e.at, e.kind, e.migration_id, e.from_state, e.to_state, e.detail,
                migrations.c.party_id, migrations.c.batch_id, batches.c.name,
            )
            .select_from(
                audit_events.join(migrations, migrations.c.id == e.migration_id).outerjoin(
                    batches, batches.c.id == migrations.c.batch_id
                )
            )
            .where(e.id > after, e.id <= upto, or_(e.to_state.in_(list(to_states)), e.kind.in_(list(kinds))))
            .order_by(e.id)
        ).all()
    out = [
        SourceEvent(
            id=r[0], at=r[1], kind=r[2], migration_id=r[3], from_state=r[4], to_state=r[5],
            detail=_json(r[6]), party_id=r[7], batch_id=r[8], batch_name=r[9],
        )
        for r in rows
    ]
    return out, upto


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def batch_finished(db: Database, batch_id: int, *, after: int, upto: int) -> dict[str, int] | None:
    """The batch's counts per state when none of its migrations is open any more and its last
    move into a terminal state is among the events ``after`` < id <= ``upto`` (so a batch is
    told complete once, by the page that read its last move); otherwise None."""
    m = migrations.c
    with db.read("check whether a batch has finished") as conn:
        counts = {
            state: n
            for state, n in conn.execute(
                select(m.state, func.count()).where(m.batch_id == batch_id).group_by(m.state)
            ).all()
        }
        if not counts or any(state not in _TERMINAL for state in counts):
            return None
        last = conn.execute(
            select(func.max(audit_events.c.id))
            .select_from(audit_events.join(migrations, m.id == audit_events.c.migration_id))
            .where(m.batch_id == batch_id, audit_events.c.to_state.in_(_TERMINAL))
        ).scalar()
    return counts if last is not None and after < last <= upto else None


def advance(db: Database, *, before: int, upto: int, found: Sequence[AlertIn]) -> bool:
    """Write the alerts read and move the cursor from ``before`` to ``upto``, in one
    transaction; False (nothing written) when another producer moved it meanwhile."""
    with db.write("record alerts") as conn:
        now = db.clock.now()
        moved = conn.execute(
            update(alert_cursor)
            .where(alert_cursor.c.name == CURSOR, alert_cursor.c.position == before)
            .values(position=upto, updated_at=now)
        )
        if moved.rowcount != 1:
            exists = conn.execute(select(alert_cursor.c.name).where(alert_cursor.c.name == CURSOR)).first()
            if exists is not None:
                return False
            conn.execute(insert(alert_cursor).values(name=CURSOR, position=upto, updated_at=now))
        _insert(conn, found, now)
    return True


def add(db: Database, found: Sequence[AlertIn]) -> None:
    """Alerts raised directly (a circuit opening, an audit verify failing), not from the trail."""
    if not found:
        return
    with db.write("record alerts") as conn:
        _insert(conn, found, db.clock.now())


def _insert(conn: Any, found: Sequence[AlertIn], now: datetime) -> None:
    if not found:
        return
    conn.execute(
        insert(alerts),
        [
            {
                "created_at": now,
                "occurred_at": a.occurred_at,
                "kind": a.kind,
                "digest_key": a.digest_key,
                "batch_name": a.batch_name,
                "party_id": a.party_id,
                "migration_id": a.migration_id,
                "event_id": a.event_id,
                "summary": a.summary,
                "message_id": None,
            }
            for a in found
        ],
    )


# ---- digests --------------------------------------------------------------------------------


def pending_groups(db: Database) -> list[PendingGroup]:
    """The digest keys with alerts waiting for a message, oldest first."""
    a = alerts.c
    query = (
        select(a.digest_key, func.count(), func.min(a.created_at))
        .where(a.message_id.is_(None))
        .group_by(a.digest_key)
        .order_by(func.min(a.created_at))
    )
    with db.read("read waiting alerts") as conn:
        return [PendingGroup(key, n, first) for key, n, first in conn.execute(query).all()]


def make_message(
    db: Database,
    digest_key: str,
    *,
    build: Callable[[list[AlertRow]], tuple[str, dict[str, Any]]],
    destinations: Sequence[str],
) -> int | None:
    """Put every waiting alert of ``digest_key`` into one message (``build`` gives its kind and
    body) with a pending delivery per destination, in one transaction; its id, or None."""
    a = alerts.c
    with db.write("make an alert message") as conn:
        now = db.clock.now()
        rows = conn.execute(
            select(alerts).where(a.message_id.is_(None), a.digest_key == digest_key).order_by(a.id)
        ).mappings().all()
        if not rows:
            return None
        members = [AlertRow(**{f: r[f] for f in AlertRow.__dataclass_fields__}) for r in rows]
        uid = uuid.uuid4().hex
        kind, body = build(members)
        body = {"id": uid, **body}
        payload = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        message_id = conn.execute(
            insert(alert_messages)
            .values(uid=uid, created_at=now, kind=kind, digest_key=digest_key, count=len(members), payload=payload)
            .returning(alert_messages.c.id)
        ).scalar_one()
        ids = [m.id for m in members]
        for start in range(0, len(ids), 500):
            conn.execute(update(alerts).where(a.id.in_(ids[start : start + 500])).values(message_id=message_id))
        if destinations:
            conn.execute(
                insert(alert_deliveries),
                [
                    {"message_id": message_id, "destination": d, "attempts": 0, "next_try_at": now,
                     "delivered_at": None, "last_error": None}
                    for d in destinations
                ],
            )
    return int(message_id)


# ---- delivery -------------------------------------------------------------------------------


def due_deliveries(db: Database, *, destinations: Sequence[str], limit: int) -> list[Delivery]:
    """Deliveries to configured destinations whose next try has come, oldest message first."""
    d, m = alert_deliveries.c, alert_messages.c
    now = db.clock.now()
    query = (
        select(d.message_id, m.uid, m.kind, d.destination, d.attempts, m.payload)
        .select_from(alert_deliveries.join(alert_messages, m.id == d.message_id))
        .where(d.next_try_at <= now, d.delivered_at.is_(None), d.destination.in_(list(destinations)))
        .order_by(d.message_id, d.destination)
        .limit(limit)
    )
    with db.read("read due alert deliveries") as conn:
        return [Delivery(*row) for row in conn.execute(query).all()]


def delivered(db: Database, delivery: Delivery) -> None:
    d = alert_deliveries.c
    with db.write("mark an alert delivered") as conn:
        conn.execute(
            update(alert_deliveries)
            .where(d.message_id == delivery.message_id, d.destination == delivery.destination)
            .values(attempts=d.attempts + 1, delivered_at=db.clock.now(), next_try_at=None, last_error=None)
        )


def failed(db: Database, delivery: Delivery, *, error: str, retry_in_s: float) -> None:
    d = alert_deliveries.c
    with db.write("note an alert delivery failure") as conn:
        now = db.clock.now()
        conn.execute(
            update(alert_deliveries)
            .where(and_(d.message_id == delivery.message_id, d.destination == delivery.destination))
            .values(attempts=d.attempts + 1, next_try_at=now + timedelta(seconds=retry_in_s), last_error=error[:500])
        )


def messages(db: Database, *, limit: int, undelivered: bool = False) -> list[MessageState]:
    """The newest messages (only those with a delivery outstanding, when ``undelivered``)."""
    m, d = alert_messages.c, alert_deliveries.c
    query = select(alert_messages).order_by(m.id.desc()).limit(limit)
    if undelivered:
        outstanding = select(d.message_id).where(d.delivered_at.is_(None))
        query = query.where(m.id.in_(outstanding))
    with db.read("list alert messages") as conn:
        rows = conn.execute(query).mappings().all()
        ids = [r["id"] for r in rows]
        per: dict[int, list[tuple[str, int, datetime | None, datetime | None, str | None]]] = {i: [] for i in ids}
        if ids:
            for r in conn.execute(
                select(d.message_id, d.destination, d.attempts, d.next_try_at, d.delivered_at, d.last_error)
                .where(d.message_id.in_(ids))
                .order_by(d.destination)
            ).all():
                per[r[0]].append((r[1], r[2], r[3], r[4], r[5]))
    return [
        MessageState(
            id=r["id"], uid=r["uid"], created_at=r["created_at"], kind=r["kind"], digest_key=r["digest_key"],
            count=r["count"], deliveries=tuple(per[r["id"]]),
        )
        for r in rows
    ]


def payload(db: Database, message_id: int) -> dict[str, Any] | None:
    """A message's body as stored (None: no such message)."""
    with db.read("read an alert message") as conn:
        text = conn.execute(select(alert_messages.c.payload).where(alert_messages.c.id == message_id)).scalar()
    return None if text is None else _json(text)


class AlertTables:
    """The functions above on one database: what ``Store.alerts`` hands the engine."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @property
    def clock(self) -> Any:
        return self._db.clock

    def cursor(self) -> int:
        return cursor(self._db)

    def events_after(
        self, after: int, *, limit: int, settle_s: float, to_states: Sequence[str], kinds: Sequence[str]
    ) -> tuple[list[SourceEvent], int]:
        return events_after(self._db, after, limit=limit, settle_s=settle_s, to_states=to_states, kinds=kinds)

    def batch_finished(self, batch_id: int, *, after: int, upto: int) -> dict[str, int] | None:
        return batch_finished(self._db, batch_id, after=after, upto=upto)

    def advance(self, *, before: int, upto: int, found: Sequence[AlertIn]) -> bool:
        return advance(self._db, before=before, upto=upto, found=found)

    def add(self, found: Sequence[AlertIn]) -> None:
        add(self._db, found)

    def pending_groups(self) -> list[PendingGroup]:
        return pending_groups(self._db)

    def make_message(
        self,
        digest_key: str,
        *,
        build: Callable[[list[AlertRow]], tuple[str, dict[str, Any]]],
        destinations: Sequence[str],
    ) -> int | None:
        return make_message(self._db, digest_key, build=build, destinations=destinations)

    def due_deliveries(self, *, destinations: Sequence[str], limit: int) -> list[Delivery]:
        return due_deliveries(self._db, destinations=destinations, limit=limit)

    def delivered(self, delivery: Delivery) -> None:
        delivered(self._db, delivery)

    def failed(self, delivery: Delivery, *, error: str, retry_in_s: float) -> None:
        failed(self._db, delivery, error=error, retry_in_s=retry_in_s)

    def messages(self, *, limit: int, undelivered: bool = False) -> list[MessageState]:
        return messages(self._db, limit=limit, undelivered=undelivered)

    def payload(self, message_id: int) -> dict[str, Any] | None:
        return payload(self._db, message_id)
