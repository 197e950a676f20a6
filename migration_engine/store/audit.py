"""The audit trail's hash chain: building events, reading them, verifying the chains.

Each event's ``hash`` is the hex SHA-256 of a canonical JSON object (sorted keys, no
whitespace, UTF-8) holding the event's content fields — migration id, seq, time (ISO 8601
UTC, microseconds), actor, kind, states, trigger, HTTP fields, the detail text exactly as
stored — and ``prev_hash``, the hash of the migration's previous event ("" for seq 1).
Changing, deleting or reordering a stored event breaks the chain from there on; the
migration row keeps the seq of the chain's head, so deleting the last event shows too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, bindparam, insert, select

from migration_engine.machine import State, Trigger
from migration_engine.store.database import Database
from migration_engine.store.records import EVENT_KINDS, AuditEvent, BrokenLink, EventIn
from migration_engine.store.schema import audit_events, migrations

# The content fields, in no particular order: the canonical JSON sorts its keys.
HASHED_FIELDS = (
    "migration_id",
    "seq",
    "at",
    "actor",
    "kind",
    "from_state",
    "to_state",
    "trigger",
    "http_method",
    "http_path",
    "http_status",
    "duration_ms",
    "request_id",
    "detail",
    "prev_hash",
)

_VERIFY_PAGE = 2000

# Built once: the chain head's hash when a caller did not read it already (one lookup on the
# (migration_id, seq) unique index).
_HEAD_HASH = select(audit_events.c.hash).where(
    audit_events.c.migration_id == bindparam("mid"), audit_events.c.seq == bindparam("seq")
)
_INSERT_EVENTS = insert(audit_events)


def _canonical_time(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def detail_text(detail: Mapping[str, Any]) -> str:
    """The canonical JSON text of an event's detail, as stored and hashed."""
    try:
        return json.dumps(dict(detail), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"audit detail is not JSON serialisable: {exc}") from exc


def event_hash(row: Mapping[Any, Any]) -> str:
    """The hash of one event row (a mapping with at least ``HASHED_FIELDS``)."""
    content = {name: row[name] for name in HASHED_FIELDS}
    content["at"] = _canonical_time(row["at"])
    blob = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def event_row(*, migration_id: int, seq: int, at: datetime, prev_hash: str, event: EventIn) -> dict[str, Any]:
    """The row to insert for ``event``, normalised to what the database gives back, and hashed."""
    if event.kind not in EVENT_KINDS:
        raise ValueError(f"unknown audit event kind {event.kind!r}; use one of {sorted(EVENT_KINDS)}")
    row: dict[str, Any] = {
        "migration_id": migration_id,
        "seq": seq,
        "at": at.astimezone(UTC),
        "actor": event.actor,
        "kind": event.kind,
        # StrEnums go in as their plain values so the hash does not depend on the enum type.
        "from_state": _opt_str(event.from_state),
        "to_state": _opt_str(event.to_state),
        "trigger": _opt_str(event.trigger),
        "http_method": event.http_method,
        "http_path": event.http_path,
        "http_status": None if event.http_status is None else int(event.http_status),
        # A float column: hash the float the database will give back, 12 and 12.0 alike.
        "duration_ms": None if event.duration_ms is None else float(event.duration_ms),
        "request_id": event.request_id,
        "detail": detail_text(event.detail),
        "prev_hash": prev_hash,
    }
    row["hash"] = event_hash(row)
    return row


def chain_rows(
    *, migration_id: int, first_seq: int, at: datetime, prev_hash: str, events: Iterable[EventIn]
) -> list[dict[str, Any]]:
    """Rows for ``events`` appended after ``prev_hash``, numbered from ``first_seq``."""
    rows = []
    for offset, ev in enumerate(events):
        row = event_row(migration_id=migration_id, seq=first_seq + offset, at=at, prev_hash=prev_hash, event=ev)
        prev_hash = row["hash"]
        rows.append(row)
    return rows


def next_rows(
    conn: Connection,
    *,
    migration_id: int,
    head_seq: int,
    at: datetime,
    events: Iterable[EventIn],
    head_hash: str | None = None,
) -> list[dict[str, Any]]:
    """The rows that append ``events`` after the chain head ``head_seq`` (``append`` without the
    insert, so a caller can insert the rows of several migrations at once). The head's hash is
    ``head_hash`` when the caller read it already (``moves`` does, in its RETURNING), else one
    indexed lookup finds it."""
    prev_hash = ""
    if head_seq > 0:
        found = head_hash
        if found is None:
            found = conn.execute(_HEAD_HASH, {"mid": migration_id, "seq": head_seq}).scalar_one_or_none()
        # A missing head is already a broken chain that `audit verify` reports; keep recording.
        prev_hash = found or ""
    return chain_rows(migration_id=migration_id, first_seq=head_seq + 1, at=at, prev_hash=prev_hash, events=events)


def insert_rows(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert event rows (``next_rows``'), one executemany for all."""
    if rows:
        conn.execute(_INSERT_EVENTS, rows)


def to_event(row: RowMapping) -> AuditEvent:
    try:
        detail = json.loads(row["detail"])
    except ValueError:
        detail = {"unreadable_detail": row["detail"]}
    return AuditEvent(
        id=row["id"],
        migration_id=row["migration_id"],
        seq=row["seq"],
        at=row["at"],
        kind=row["kind"],
        actor=row["actor"],
        from_state=State(row["from_state"]) if row["from_state"] is not None else None,
        to_state=State(row["to_state"]) if row["to_state"] is not None else None,
        trigger=Trigger(row["trigger"]) if row["trigger"] is not None else None,
        http_method=row["http_method"],
        http_path=row["http_path"],
        http_status=row["http_status"],
        duration_ms=row["duration_ms"],
        request_id=row["request_id"],
        detail=detail,
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )


def events_of(conn: Connection, migration_id: int) -> list[AuditEvent]:
    rows = conn.execute(
        select(audit_events).where(audit_events.c.migration_id == migration_id).order_by(audit_events.c.seq)
    ).mappings()
    return [to_event(row) for row in rows]


def _first_break(events: list[RowMapping], head_seq: int) -> tuple[int, str] | None:
    """The first seq of one migration's chain that does not verify, and why."""
    prev_hash = ""
    expected = 1
    for row in events:
        seq = row["seq"]
        if seq != expected:
            return expected, f"event {expected} is missing (deleted?)"
        if row["prev_hash"] != prev_hash:
            return seq, "prev_hash does not match the previous event's hash (an earlier event changed)"
        if event_hash(row) != row["hash"]:
            return seq, "the event's content does not match its hash (changed)"
        prev_hash = row["hash"]
        expected += 1
    if expected <= head_seq:
        return expected, f"events {expected}..{head_seq} are missing (deleted?)"
    if expected - 1 > head_seq:
        return (
            head_seq + 1,
            f"event {head_seq + 1} is beyond the chain head {head_seq} recorded on the migration",
        )
    return None


def verify(db: Database) -> list[BrokenLink]:
    """Check every migration's chain; one ``BrokenLink`` (the first break) per broken chain.

    Pages through migrations by id in short read transactions, so a big trail neither holds a
    transaction open for long nor loads everything at once.
    """
    broken: list[BrokenLink] = []
    last_id = 0
    while True:
        with db.read("verify the audit trail") as conn:
            heads = conn.execute(
                select(migrations.c.id, migrations.c.party_id, migrations.c.event_seq)
                .where(migrations.c.id > last_id)
                .order_by(migrations.c.id)
                .limit(_VERIFY_PAGE)
            ).all()
            if not heads:
                return broken
            lo, hi = heads[0].id, heads[-1].id
            by_migration: dict[int, list[RowMapping]] = {}
            for row in conn.execute(
                select(audit_events)
                .where(audit_events.c.migration_id.between(lo, hi))
                .order_by(audit_events.c.migration_id, audit_events.c.seq)
            ).mappings():
                by_migration.setdefault(row["migration_id"], []).append(row)
        for head in heads:
            found = _first_break(by_migration.get(head.id, []), head.event_seq)
            if found is not None:
                broken.append(BrokenLink(migration_id=head.id, party_id=head.party_id, seq=found[0], reason=found[1]))
        last_id = hi
