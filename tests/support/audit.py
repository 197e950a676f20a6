"""Audit-trail helpers: a database at schema revision 0002 with plain SHA-256 chains (what
revision 0003 re-keys), and the plain hash an attacker without the audit key can compute."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from alembic import command

from migration_engine.clock import ManualClock
from migration_engine.store.audit import HASHED_FIELDS
from migration_engine.store.database import Database
from migration_engine.store.schema import audit_events, batches, migrations
from migration_engine.store.versioning import alembic_config

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def plain_hash(row: Mapping[str, Any]) -> str:
    """The unkeyed SHA-256 of an event row, as revision 0002's chains (and a forger) compute it."""
    content = {name: row[name] for name in HASHED_FIELDS}
    content["at"] = row["at"].astimezone(UTC).isoformat(timespec="microseconds")
    blob = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class LegacyMigration:
    party_id: str
    direction: str
    moves: tuple[tuple[str, str, str], ...]  # (from_state, to_state, trigger), after the created event
    row_state: str | None = None  # the row's state, when it should contradict its chain


def _event(mid: int, seq: int, at: datetime, prev: str, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(HASHED_FIELDS)
    row.update(migration_id=mid, seq=seq, at=at, actor="w1", prev_hash=prev, detail="{}")
    row.update(fields)
    row["hash"] = plain_hash(row)
    return row


def legacy_database(url: str, items: list[LegacyMigration], *, batch: str = "legacy") -> dict[str, int]:
    """Create the schema at revision 0002 and store ``items`` as 0002 did (created events without
    the party id, plain SHA-256 chains, each with one api_call); returns party -> migration id."""
    db = Database(url, clock=ManualClock(), pool_size=1)
    try:
        config = alembic_config()
        with db.engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0002")
        ids = {}
        with db.engine.begin() as conn:
            batch_id = conn.execute(batches.insert().values(name=batch, created_at=T0).returning(batches.c.id)).scalar()
            for i, item in enumerate(items, 1):
                at = T0 + timedelta(minutes=i)
                events = [
                    _event(
                        i,
                        1,
                        at,
                        "",
                        kind="created",
                        to_state="requested",
                        detail=json.dumps(
                            {"batch": batch, "direction": item.direction, "has_key": False},
                            sort_keys=True,
                            separators=(",", ":"),
                        ),
                    )
                ]
                events.append(
                    _event(
                        i,
                        2,
                        at,
                        events[-1]["hash"],
                        kind="api_call",
                        http_method="GET",
                        http_path="/x",
                        http_status=200,
                    )
                )
                for from_state, to_state, trigger in item.moves:
                    events.append(
                        _event(
                            i,
                            len(events) + 1,
                            at,
                            events[-1]["hash"],
                            kind="transition",
                            from_state=from_state,
                            to_state=to_state,
                            trigger=trigger,
                            duration_ms=12.0,
                        )
                    )
                state = item.row_state or (item.moves[-1][1] if item.moves else "requested")
                terminal = state in ("completed", "cancelled")
                conn.execute(
                    migrations.insert().values(
                        id=i,
                        batch_id=batch_id,
                        party_id=item.party_id,
                        direction=item.direction,
                        state=state,
                        version=len(events),
                        attempts=0,
                        paused=False,
                        created_at=at,
                        updated_at=at,
                        completed_at=at if terminal else None,
                        next_run_at=None if terminal else at,
                        event_seq=len(events),
                    )
                )
                conn.execute(audit_events.insert(), events)
                ids[item.party_id] = i
            if not db.is_sqlite:  # ids were given: move the sequence past them
                conn.exec_driver_sql(
                    "SELECT setval(pg_get_serial_sequence('migrations', 'id'), max(id)) FROM migrations"
                )
        return ids
    finally:
        db.dispose()
