"""`audit export`: every audit event with its migration's party, direction and batch, for an auditor.

Events hold no secret (keys are masked before an event is written), so an export holds none
either. Read a page of migrations at a time, with their events, in short read transactions.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import select

from migration_engine.store.database import Database
from migration_engine.store.schema import audit_events, batches, migrations

PAGE = 1000


def _time(value: Any) -> str:
    return str(value.isoformat(timespec="microseconds"))


def events(db: Database, *, batch_name: str | None = None) -> Iterator[dict[str, Any]]:
    """Every event in (migration id, seq) order as a JSON-ready dict, optionally of one batch."""
    rows = (
        select(
            migrations.c.id,
            migrations.c.party_id,
            migrations.c.direction,
            migrations.c.state,
            batches.c.name.label("batch"),
        )
        .select_from(migrations.outerjoin(batches, batches.c.id == migrations.c.batch_id))
        .order_by(migrations.c.id)
        .limit(PAGE)
    )
    if batch_name is not None:
        rows = rows.where(batches.c.name == batch_name)
    last_id = 0
    while True:
        with db.read("export the audit trail") as conn:
            page = conn.execute(rows.where(migrations.c.id > last_id)).all()
            if not page:
                return
            by_id = {m.id: m for m in page}
            found = conn.execute(
                select(audit_events)
                .where(audit_events.c.migration_id.in_(list(by_id)))
                .order_by(audit_events.c.migration_id, audit_events.c.seq)
            ).mappings()
            out = []
            for ev in found:
                m = by_id[ev["migration_id"]]
                try:
                    detail: Any = json.loads(ev["detail"])
                except ValueError:
                    detail = {"unreadable_detail": ev["detail"]}
                out.append(
                    {
                        "migration_id": m.id,
                        "party_id": m.party_id,
                        "direction": m.direction,
                        "batch": m.batch,
                        "seq": ev["seq"],
                        "at": _time(ev["at"]),
                        "kind": ev["kind"],
                        "actor": ev["actor"],
                        "from_state": ev["from_state"],
                        "to_state": ev["to_state"],
                        "trigger": ev["trigger"],
                        "http_method": ev["http_method"],
                        "http_path": ev["http_path"],
                        "http_status": ev["http_status"],
                        "duration_ms": ev["duration_ms"],
                        "request_id": ev["request_id"],
                        "detail": detail,
                        "prev_hash": ev["prev_hash"],
                        "hash": ev["hash"],
                    }
                )
        yield from out
        last_id = page[-1].id
