"""Audit chains that cover the rows: keyed (HMAC) hashes, re-chained under the audit key.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

Until 0002 each event's hash was a plain SHA-256 of its content and the previous hash, so
anyone with write access could edit an event and recompute the chain. From 0003 on every hash
is an HMAC-SHA256 under the audit key (setting ``audit.key``), and the chain names the row's
party, direction and batch. This revision, per migration, in one transaction:

1. checks the old SHA-256 chain, and the row against it (state, direction, batch), as 0002's
   `audit verify` would, noting every problem found;
2. recomputes each event's ``prev_hash`` and ``hash`` under the audit key; the events' content
   is not touched, so the old chain can still be recomputed from it;
3. appends one ``audit_rekeyed`` event (actor ``peppol-migrate db upgrade``, state unchanged)
   whose detail records the party id, direction, batch name and id (binding the row to the
   chain from now on), how many events were re-keyed, the old chain's head SHA-256
   (``sha256_head``, which commits to the old chain: an auditor can recompute it from the
   events' content) and the problems found (``findings``); `audit verify` keeps reporting a
   migration whose findings are not empty, so re-keying never hides an earlier break.

It needs the key (``config.attributes["audit_key"]``, which ``Store.upgrade`` passes): with
events stored and no key configured it refuses and changes nothing. A database without events
needs no key. It cannot run offline (``--sql``): it reads and rewrites data.

Downgrade recomputes every chain as plain SHA-256 (what 0002 verifies), keeping the
``audit_rekeyed`` events as ordinary events.

Frozen history: the hashing is spelled out here, not imported from the package.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import context, op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY_VARIABLE = "PEPPOL_MIGRATE_AUDIT__KEY"
MIN_KEY_LENGTH = 16
PAGE = 1000
ACTOR = "peppol-migrate db upgrade"
KIND = "audit_rekeyed"
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

_meta = sa.MetaData()
UTC_TIME = sa.DateTime(timezone=True)
batches = sa.Table("batches", _meta, sa.Column("id", sa.Integer), sa.Column("name", sa.Text))
migrations = sa.Table(
    "migrations",
    _meta,
    sa.Column("id", sa.Integer),
    sa.Column("party_id", sa.Text),
    sa.Column("direction", sa.String(16)),
    sa.Column("state", sa.String(32)),
    sa.Column("batch_id", sa.Integer),
    sa.Column("event_seq", sa.Integer),
)
audit_events = sa.Table(
    "audit_events",
    _meta,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("migration_id", sa.Integer),
    sa.Column("seq", sa.Integer),
    sa.Column("at", UTC_TIME),
    sa.Column("actor", sa.Text),
    sa.Column("kind", sa.String(16)),
    sa.Column("from_state", sa.String(32)),
    sa.Column("to_state", sa.String(32)),
    sa.Column("trigger", sa.String(32)),
    sa.Column("http_method", sa.String(16)),
    sa.Column("http_path", sa.Text),
    sa.Column("http_status", sa.Integer),
    sa.Column("duration_ms", sa.Float),
    sa.Column("request_id", sa.Text),
    sa.Column("detail", sa.Text),
    sa.Column("prev_hash", sa.String(64)),
    sa.Column("hash", sa.String(64)),
)

Hasher = Callable[[bytes], str]


def _utc(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _content(row: dict[str, Any]) -> bytes:
    content = {name: row[name] for name in HASHED_FIELDS}
    content["at"] = _utc(row["at"]).isoformat(timespec="microseconds")
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _plain(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def _keyed(key: bytes) -> Hasher:
    return lambda blob: hmac.new(key, blob, hashlib.sha256).hexdigest()


def _detail(row: dict[str, Any]) -> dict[str, Any]:
    try:
        value = json.loads(row["detail"])
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _old_findings(head: Any, events: list[dict[str, Any]]) -> list[str]:
    """What 0002's `audit verify` would report, and where the row contradicts its chain."""
    prev, expected = "", 1
    for row in events:
        if row["seq"] != expected:
            return [f"event {expected} was missing"]
        if row["prev_hash"] != prev:
            return [f"event {row['seq']}'s prev_hash did not match the previous event's hash"]
        if _plain(_content(row)) != row["hash"]:
            return [f"event {row['seq']}'s content did not match its SHA-256 hash"]
        prev, expected = row["hash"], expected + 1
    if expected <= head.event_seq:
        return [f"events {expected}..{head.event_seq} were missing"]
    if expected - 1 > head.event_seq:
        return [f"event {head.event_seq + 1} was beyond the chain head {head.event_seq}"]
    findings = []
    if not events or events[0]["kind"] != "created":
        findings.append("event 1 was not a created event")
    else:
        created = _detail(events[0])
        if created.get("direction") != head.direction:
            findings.append(f"direction was {head.direction} but the created event said {created.get('direction')}")
        if created.get("batch") != head.batch_name:
            findings.append(f"batch was {head.batch_name!r} but the created event said {created.get('batch')!r}")
    last = next((r["to_state"] for r in reversed(events) if r["to_state"] is not None), None)
    if last is not None and last != head.state:
        findings.append(f"state was {head.state} but the chain's last event left it {last}")
    return findings


def _rechain(events: list[dict[str, Any]], hasher: Hasher) -> list[dict[str, Any]]:
    """New (prev_hash, hash) for the events in seq order, content unchanged."""
    prev, out = "", []
    for row in events:
        digest = hasher(_content({**row, "prev_hash": prev}))
        out.append({"b_id": row["id"], "b_prev": prev, "b_hash": digest})
        prev = digest
    return out


def _pages(bind: sa.Connection) -> Any:
    """(migration rows, their events by migration id), a page of migrations at a time."""
    rows = (
        sa.select(
            migrations.c.id,
            migrations.c.party_id,
            migrations.c.direction,
            migrations.c.state,
            migrations.c.batch_id,
            migrations.c.event_seq,
            batches.c.name.label("batch_name"),
        )
        .select_from(migrations.outerjoin(batches, batches.c.id == migrations.c.batch_id))
        .order_by(migrations.c.id)
        .limit(PAGE)
    )
    last_id = 0
    while True:
        heads = bind.execute(rows.where(migrations.c.id > last_id)).all()
        if not heads:
            return
        by_id: dict[int, list[dict[str, Any]]] = {h.id: [] for h in heads}
        for ev in bind.execute(
            sa.select(audit_events)
            .where(audit_events.c.migration_id.in_(list(by_id)))
            .order_by(audit_events.c.migration_id, audit_events.c.seq)
        ).mappings():
            by_id[ev["migration_id"]].append(dict(ev))
        yield heads, by_id
        last_id = heads[-1].id


_SET_HASHES = (
    sa.update(audit_events)
    .where(audit_events.c.id == sa.bindparam("b_id"))
    .values(prev_hash=sa.bindparam("b_prev"), hash=sa.bindparam("b_hash"))
)
_SET_SEQ = sa.update(migrations).where(migrations.c.id == sa.bindparam("b_id")).values(event_seq=sa.bindparam("b_seq"))


def _audit_key(bind: sa.Connection) -> bytes | None:
    """The audit key, or None when there are no events to re-key; refuses when it is needed
    and missing or too short."""
    if not bind.execute(sa.select(sa.func.count()).select_from(audit_events)).scalar_one():
        return None
    key = context.config.attributes.get("audit_key")
    from migration_engine.errors import ConfigError  # the exception tree, so the CLI exits 2

    if not key:
        raise ConfigError(
            f"schema revision 0003 re-chains the stored audit events under the audit key, and none is set: "
            f"set {KEY_VARIABLE} (setting audit.key, at least {MIN_KEY_LENGTH} characters, e.g. "
            "`openssl rand -base64 32`, not the key-encryption key) and run `peppol-migrate db upgrade` again; "
            "nothing was changed"
        )
    if len(key) < MIN_KEY_LENGTH:
        raise ConfigError(f"the audit key ({KEY_VARIABLE}) is shorter than {MIN_KEY_LENGTH} characters")
    return str(key).encode("utf-8")


def upgrade() -> None:
    if context.is_offline_mode():
        raise RuntimeError("schema revision 0003 re-chains stored audit events: it cannot run offline (--sql)")
    bind = op.get_bind()
    key = _audit_key(bind)
    if key is None:
        return
    hasher = _keyed(key)
    now = datetime.now(UTC)
    at = now.replace(tzinfo=None) if bind.dialect.name == "sqlite" else now  # SQLite: UTC text
    for heads, by_id in _pages(bind):
        hashes: list[dict[str, Any]] = []
        added: list[dict[str, Any]] = []
        seqs: list[dict[str, Any]] = []
        for head in heads:
            events = by_id[head.id]
            findings = _old_findings(head, events)
            rechained = _rechain(events, hasher)
            hashes += rechained
            seq = max([head.event_seq, *(e["seq"] for e in events)]) + 1
            detail = {
                "revision": revision,
                "party_id": head.party_id,
                "direction": head.direction,
                "batch": head.batch_name,
                "batch_id": head.batch_id,
                "events": len(events),
                "sha256_head": events[-1]["hash"] if events else "",
                "findings": findings,
            }
            row: dict[str, Any] = {
                "migration_id": head.id,
                "seq": seq,
                "at": _utc(now),
                "actor": ACTOR,
                "kind": KIND,
                "from_state": head.state,
                "to_state": head.state,
                "trigger": None,
                "http_method": None,
                "http_path": None,
                "http_status": None,
                "duration_ms": None,
                "request_id": None,
                "detail": json.dumps(detail, sort_keys=True, separators=(",", ":"), ensure_ascii=False),
                "prev_hash": rechained[-1]["b_hash"] if rechained else "",
            }
            row["hash"] = hasher(_content(row))
            added.append({**row, "at": at})
            seqs.append({"b_id": head.id, "b_seq": seq})
        if hashes:
            bind.execute(_SET_HASHES, hashes)
        bind.execute(sa.insert(audit_events), added)
        bind.execute(_SET_SEQ, seqs)


def downgrade() -> None:
    bind = op.get_bind()
    for _heads, by_id in _pages(bind):
        hashes = [h for events in by_id.values() for h in _rechain(events, _plain)]
        if hashes:
            bind.execute(_SET_HASHES, hashes)
