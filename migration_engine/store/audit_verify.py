"""`audit verify`: every migration's keyed chain, and its row against the chain (and an anchor).

A migration verifies when its events are numbered 1..event_seq without a gap, each event's
``prev_hash`` is the previous event's hash, each hash is the HMAC of the event's content under
the audit key, event 1 is the ``created`` event, and the row agrees with its chain:

- party id, direction, batch id and batch name are those the ``created`` event recorded (for a
  migration created before the audit key, the ``audit_rekeyed`` event revision 0003 appended);
- the state is the ``to_state`` of the last event that records one (every move and every
  "stay" event records the state it leaves the migration in).

With an anchor (``audit_anchor``) also: every anchored migration still exists, still has at
least the anchored number of events, and its event at the anchored seq still has the anchored
hash; so deleting a whole migration, truncating a chain (and fixing ``event_seq``) or rewriting
one under the key shows as well.

Migrations are read a page at a time, each page with its events, in short read transactions:
a big trail neither holds a transaction open long nor sits in memory at once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import RowMapping, select

from migration_engine.store.audit import event_hash, require_key
from migration_engine.store.database import Database
from migration_engine.store.records import AuditAnchor, BrokenLink, ChainHead
from migration_engine.store.schema import audit_events, batches, migrations

PAGE = 2000
REKEYED = "audit_rekeyed"
_UNKNOWN_PARTY = "(party unknown)"

_ROWS = (
    select(
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
)


@dataclass(frozen=True)
class Checked:
    """One migration as verified: its chain head, and why it does not verify (or None)."""

    head: ChainHead
    broken: BrokenLink | None


def _detail(row: RowMapping) -> dict[str, Any]:
    try:
        value = json.loads(row["detail"])
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _chain_break(events: Sequence[RowMapping], head_seq: int, key: bytes) -> tuple[int, str] | None:
    """The first seq of one migration's chain that does not verify, and why."""
    if not events and head_seq == 0:
        return 1, "the migration has no audit events, not even its created event (not written by peppol-migrate)"
    prev_hash = ""
    expected = 1
    for row in events:
        seq = row["seq"]
        if seq != expected:
            return expected, f"event {expected} is missing (deleted?)"
        if row["prev_hash"] != prev_hash:
            return seq, "prev_hash does not match the previous event's hash (an earlier event changed)"
        if event_hash(row, key) != row["hash"]:
            return seq, "the event's content does not match its hash (changed, or written without the audit key)"
        prev_hash = row["hash"]
        expected += 1
    if expected <= head_seq:
        return expected, f"events {expected}..{head_seq} are missing (deleted?)"
    if expected - 1 > head_seq:
        return head_seq + 1, f"event {head_seq + 1} is beyond the chain head {head_seq} recorded on the migration"
    if events[0]["kind"] != "created":
        return 1, f"event 1 is a {events[0]['kind']} event, not the migration's created event"
    return None


def _identity(events: Sequence[RowMapping]) -> tuple[int, dict[str, Any]] | None:
    """The event that names the migration's party, direction and batch, and its detail."""
    for row in events:
        if row["kind"] in ("created", REKEYED):
            detail = _detail(row)
            if "party_id" in detail:
                return row["seq"], detail
    return None


def _row_mismatch(head: RowMapping, events: Sequence[RowMapping]) -> tuple[int, str] | None:
    """Where the row disagrees with its (verified) chain: every difference, in one reason, at
    the first event it contradicts."""
    found = _identity(events)
    if found is None:
        return 1, "no event of the chain names the migration's party (neither its created nor an audit_rekeyed event)"
    seq, said = found
    problems: list[tuple[int, str]] = []
    if said.get("party_id") != head["party_id"]:
        problems.append((seq, f"party_id is {head['party_id']} but the chain was created for {said.get('party_id')}"))
    if said.get("direction") != head["direction"]:
        problems.append((seq, f"direction is {head['direction']} but the chain says {said.get('direction')}"))
    if said.get("batch_id") != head["batch_id"] or said.get("batch") != head["batch_name"]:
        problems.append(
            (
                seq,
                f"batch is {head['batch_name']!r} (id {head['batch_id']}) but the chain says "
                f"{said.get('batch')!r} (id {said.get('batch_id')})",
            )
        )
    for row in events:
        findings = _detail(row).get("findings") if row["kind"] == REKEYED else None
        if findings:
            listed = "; ".join(str(f) for f in findings)
            problems.append((row["seq"], f"it was already broken when revision 0003 re-keyed it: {listed}"))
    last = next(((r["seq"], r["to_state"]) for r in reversed(events) if r["to_state"] is not None), None)
    if last is not None and last[1] != head["state"]:
        said_state = f"the chain's last event (event {last[0]}) leaves it {last[1]}"
        problems.append((last[0], f"state is {head['state']} but {said_state}"))
    if not problems:
        return None
    return min(p[0] for p in problems), "the row disagrees with its audit chain: " + "; ".join(p[1] for p in problems)


def _anchor_mismatch(
    head: RowMapping, events: Sequence[RowMapping], anchored: ChainHead, anchor: AuditAnchor
) -> tuple[int, str] | None:
    since = f"the anchor of {anchor.written_at.isoformat(timespec='seconds')}"
    if anchored.seq < 1:
        return None
    if head["event_seq"] < anchored.seq:
        return (
            head["event_seq"] + 1,
            f"the chain has {head['event_seq']} events but had {anchored.seq} at {since}: "
            f"events {head['event_seq'] + 1}..{anchored.seq} were deleted (truncated)",
        )
    if events[anchored.seq - 1]["hash"] != anchored.head:
        return anchored.seq, f"event {anchored.seq} is not the one {since} recorded: the chain was rewritten since"
    if anchored.party_id != head["party_id"]:
        return 1, f"the row's party_id is {head['party_id']} but {since} recorded {anchored.party_id}"
    return None


def _check(
    head: RowMapping, events: Sequence[RowMapping], key: bytes, anchor: AuditAnchor | None, anchored: ChainHead | None
) -> Checked:
    found = _chain_break(events, head["event_seq"], key) or _row_mismatch(head, events)
    if found is None and anchor is not None and anchored is not None:
        found = _anchor_mismatch(head, events, anchored, anchor)
    top = events[head["event_seq"] - 1]["hash"] if 0 < head["event_seq"] <= len(events) else ""
    broken = None
    if found is not None:
        broken = BrokenLink(migration_id=head["id"], party_id=head["party_id"], seq=found[0], reason=found[1])
    return Checked(ChainHead(head["id"], head["party_id"], head["event_seq"], top), broken)


def _orphan(migration_id: int, events: Sequence[RowMapping], anchored: ChainHead | None) -> BrokenLink:
    found = _identity(events)
    party = anchored.party_id if anchored else (str(found[1]["party_id"]) if found else _UNKNOWN_PARTY)
    return BrokenLink(
        migration_id=migration_id,
        party_id=party,
        seq=1,
        reason=f"{len(events)} audit events remain of a migration whose row is gone (deleted)",
    )


def _deleted(anchored: ChainHead, anchor: AuditAnchor) -> BrokenLink:
    when = anchor.written_at.isoformat(timespec="seconds")
    return BrokenLink(
        migration_id=anchored.migration_id,
        party_id=anchored.party_id,
        seq=1,
        reason=f"the migration is gone: deleted since the anchor of {when}, which had {anchored.seq} events",
    )


def walk(db: Database, *, anchor: AuditAnchor | None = None) -> Iterator[Checked | BrokenLink]:
    """Every migration checked, in id order, a page at a time; a ``BrokenLink`` alone for events
    whose row is gone and for anchored migrations that no longer exist."""
    key = require_key(db)
    anchored = {h.migration_id: h for h in anchor.heads} if anchor is not None else {}
    seen: set[int] = set()
    last_id = 0
    while True:
        with db.read("verify the audit trail") as conn:
            heads = conn.execute(_ROWS.where(migrations.c.id > last_id).limit(PAGE)).mappings().all()
            final = len(heads) < PAGE
            # Events of ids between the pages' rows (or beyond the last row) are read as well,
            # so events whose row was deleted are found too.
            where = [audit_events.c.migration_id > last_id]
            if not final:
                where.append(audit_events.c.migration_id <= heads[-1]["id"])
            by_migration: dict[int, list[RowMapping]] = {}
            for row in conn.execute(
                select(audit_events).where(*where).order_by(audit_events.c.migration_id, audit_events.c.seq)
            ).mappings():
                by_migration.setdefault(row["migration_id"], []).append(row)
        rows = {head["id"]: head for head in heads}
        for mid in sorted(set(rows) | set(by_migration)):
            seen.add(mid)
            events = by_migration.get(mid, [])
            if mid in rows:
                yield _check(rows[mid], events, key, anchor, anchored.get(mid))
            else:
                yield _orphan(mid, events, anchored.get(mid))
        if final:
            break
        last_id = heads[-1]["id"]
    if anchor is not None:
        for mid in sorted(set(anchored) - seen):
            yield _deleted(anchored[mid], anchor)


def verify(db: Database, *, anchor: AuditAnchor | None = None) -> list[BrokenLink]:
    """One ``BrokenLink`` per migration whose audit trail does not verify (see the module's doc)."""
    broken: list[BrokenLink] = []
    for item in walk(db, anchor=anchor):
        if isinstance(item, BrokenLink):
            broken.append(item)
        elif item.broken is not None:
            broken.append(item.broken)
    return broken
