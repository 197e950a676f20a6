"""The audit trail's keyed hash chain: building events and reading them back.

Each event's ``hash`` is the hex HMAC-SHA256, under the audit key (setting ``audit.key``), of
a canonical JSON object (sorted keys, no whitespace, UTF-8) holding the event's content
fields — migration id, seq, time (ISO 8601 UTC, microseconds), actor, kind, states, trigger,
HTTP fields, the detail text exactly as stored — and ``prev_hash``, the hash of the
migration's previous event ("" for seq 1). Changing, deleting or reordering a stored event
breaks the chain from there on, and without the key nobody can compute a chain that verifies.
The ``created`` event's detail names the party, the direction and the batch, so the row is
bound to its chain; ``audit_verify`` checks the rows against their chains.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Integer, Label, RowMapping, bindparam, insert, literal_column, select

from migration_engine.errors import ConfigError
from migration_engine.machine import State, Trigger
from migration_engine.store.database import AUDIT_KEY_INFO, Database
from migration_engine.store.records import EVENT_KINDS, AuditEvent, EventIn
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

AUDIT_KEY_VARIABLE = "PEPPOL_MIGRATE_AUDIT__KEY"
MIN_KEY_LENGTH = 16
_KEY_ID_TEXT = b"peppol-migrate audit key id"

# Built once: the chain head's hash when a caller did not read it already (one lookup on the
# (migration_id, seq) unique index).
_HEAD_HASH = select(audit_events.c.hash).where(
    audit_events.c.migration_id == bindparam("mid"), audit_events.c.seq == bindparam("seq")
)
_INSERT_EVENTS = insert(audit_events)


def previous_head_hash(migration_id: ColumnElement[Any], n_events: ColumnElement[Any] | int) -> Label[Any]:
    """For an ``UPDATE migrations ... RETURNING`` that advances ``event_seq`` by ``n_events``:
    the hash of the chain's head before it (RETURNING sees the updated row, so that head is
    ``event_seq - n_events``), read in the same statement: one lookup less per write. The row's
    column is spelled out with its table: SQLite's RETURNING is rendered without table names."""
    head = audit_events.alias("head")
    new_seq = literal_column(f"{migrations.name}.{migrations.c.event_seq.name}", Integer())
    return (
        select(head.c.hash)
        .where(head.c.migration_id == migration_id, head.c.seq == new_seq - n_events)
        .scalar_subquery()
        .label("head_hash")
    )


def _canonical_time(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def detail_text(detail: Mapping[str, Any]) -> str:
    """The canonical JSON text of an event's detail, as stored and hashed."""
    try:
        return json.dumps(dict(detail), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"audit detail is not JSON serialisable: {exc}") from exc


def _checked_key(key: str | None) -> bytes:
    if not key:
        raise ConfigError(
            f"no audit key: set {AUDIT_KEY_VARIABLE} (setting audit.key, at least {MIN_KEY_LENGTH} characters, "
            "e.g. `openssl rand -base64 32`; keep it apart from the key-encryption key): the audit trail's "
            "hashes are keyed with it"
        )
    if len(key) < MIN_KEY_LENGTH:
        raise ConfigError(f"the audit key ({AUDIT_KEY_VARIABLE}) is shorter than {MIN_KEY_LENGTH} characters")
    return key.encode("utf-8")


def require_key(db: Database) -> bytes:
    """The audit key as HMAC key bytes; ``ConfigError`` (exit 2) naming the setting when it is
    not configured or too short. Every command that writes or verifies the audit trail needs it."""
    return _checked_key(db.audit_key)


def connection_key(conn: Connection) -> bytes:
    """The audit key of the store whose write transaction ``conn`` is (``Database.write`` puts
    it on the connection), refused as ``require_key`` refuses it."""
    key = conn.info.get(AUDIT_KEY_INFO)
    return _checked_key(key if isinstance(key, str) else None)


def key_id(key: bytes) -> str:
    """A short public name of an audit key (an HMAC of a fixed text), to tell keys apart."""
    return hmac.new(key, _KEY_ID_TEXT, hashlib.sha256).hexdigest()[:16]


def event_hash(row: Mapping[Any, Any], key: bytes) -> str:
    """The keyed hash of one event row (a mapping with at least ``HASHED_FIELDS``)."""
    content = {name: row[name] for name in HASHED_FIELDS}
    content["at"] = _canonical_time(row["at"])
    blob = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hmac.new(key, blob.encode("utf-8"), hashlib.sha256).hexdigest()


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def event_row(
    *, migration_id: int, seq: int, at: datetime, prev_hash: str, event: EventIn, key: bytes
) -> dict[str, Any]:
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
    row["hash"] = event_hash(row, key)
    return row


def chain_rows(
    *, migration_id: int, first_seq: int, at: datetime, prev_hash: str, events: Iterable[EventIn], key: bytes
) -> list[dict[str, Any]]:
    """Rows for ``events`` appended after ``prev_hash``, numbered from ``first_seq``."""
    rows = []
    for offset, ev in enumerate(events):
        row = event_row(
            migration_id=migration_id, seq=first_seq + offset, at=at, prev_hash=prev_hash, event=ev, key=key
        )
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
    key: bytes | None = None,
    head_hash: str | None = None,
) -> list[dict[str, Any]]:
    """The rows that append ``events`` after the chain head ``head_seq`` (``append`` without the
    insert, so a caller can insert the rows of several migrations at once). The head's hash is
    ``head_hash`` when the caller read it already (``moves`` does, in its RETURNING), else one
    indexed lookup finds it. ``key`` defaults to the audit key of the write transaction ``conn``."""
    key = connection_key(conn) if key is None else key
    prev_hash = ""
    if head_seq > 0:
        found = head_hash
        if found is None:
            found = conn.execute(_HEAD_HASH, {"mid": migration_id, "seq": head_seq}).scalar_one_or_none()
        # A missing head is already a broken chain that `audit verify` reports; keep recording.
        prev_hash = found or ""
    return chain_rows(
        migration_id=migration_id, first_seq=head_seq + 1, at=at, prev_hash=prev_hash, events=events, key=key
    )


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
