"""What `status` and `show` print, as plain data (the CLI renders it as a table or JSON)."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timedelta
from typing import Any

from migration_engine.machine import TERMINAL_STATES, Direction, State, states
from migration_engine.store import AuditEvent, MigrationRecord, Store


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def status(store: Store, *, batch_name: str | None = None, now: datetime) -> dict[str, Any]:
    """Counts per direction and state, progress, throughput, the oldest waiting party, errors."""
    by_direction: dict[str, dict[str, int]] = {d.value: {s.value: 0 for s in states(d)} for d in Direction}
    for direction, state, count in store.counts(batch_name=batch_name):
        by_direction[direction.value][state.value] = by_direction[direction.value].get(state.value, 0) + count
    total = sum(sum(v.values()) for v in by_direction.values())
    completed = sum(v.get(State.COMPLETED.value, 0) for v in by_direction.values())
    cancelled = sum(v.get(State.CANCELLED.value, 0) for v in by_direction.values())

    errors: Counter[str] = Counter()
    oldest: MigrationRecord | None = None
    paused = 0
    last_hour = 0
    since = now - timedelta(hours=1)
    for record in store.list_migrations(batch_name=batch_name):
        if record.completed_at is not None and record.state is State.COMPLETED and record.completed_at >= since:
            last_hour += 1
        if record.state in TERMINAL_STATES:
            continue
        paused += record.paused
        if (record.last_error_code and record.state in (State.NEEDS_ATTENTION, State.KEY_REJECTED)) or (
            record.last_error_code and record.attempts
        ):
            errors[record.last_error_code or "unknown"] += 1
        if oldest is None or record.updated_at < oldest.updated_at:
            oldest = record
    done = completed + cancelled
    return {
        "batch": batch_name,
        "total": total,
        "completed": completed,
        "percent_done": round(100.0 * done / total, 1) if total else 100.0,
        "throughput_last_hour": last_hour,
        "paused": paused,
        "by_direction": by_direction,
        "needs_attention": sum(v.get(State.NEEDS_ATTENTION.value, 0) for v in by_direction.values()),
        "key_rejected": by_direction[Direction.TO_ECONNECT.value].get(State.KEY_REJECTED.value, 0),
        "oldest_waiting": None
        if oldest is None
        else {"party_id": oldest.party_id, "state": oldest.state.value, "since": _iso(oldest.updated_at)},
        "errors_by_code": dict(errors.most_common()),
    }


def migration_dict(record: MigrationRecord) -> dict[str, Any]:
    """A migration as the CLI shows it. The key itself never appears, only whether one is stored."""
    return {
        "id": record.id,
        "party_id": record.party_id,
        "direction": record.direction.value,
        "state": record.state.value,
        "batch": record.batch_name,
        "profile": record.profile,
        "name": record.name,
        "new_provider": record.new_provider,
        "has_key": record.key_ciphertext is not None,
        "key_issued_at": _iso(record.key_issued_at),
        "attempts": record.attempts,
        "paused": record.paused,
        "next_run_at": _iso(record.next_run_at),
        "deadline_at": _iso(record.deadline_at),
        "failed_state": record.failed_state.value if record.failed_state else None,
        "last_error": record.last_error,
        "last_error_code": record.last_error_code,
        "created_at": _iso(record.created_at),
        "updated_at": _iso(record.updated_at),
        "completed_at": _iso(record.completed_at),
    }


def event_dict(event: AuditEvent) -> dict[str, Any]:
    out: dict[str, Any] = {
        "seq": event.seq,
        "at": _iso(event.at),
        "actor": event.actor,
        "kind": event.kind,
    }
    for name in (
        "from_state",
        "to_state",
        "trigger",
        "http_method",
        "http_path",
        "http_status",
        "duration_ms",
        "request_id",
    ):
        value = getattr(event, name)
        if value is not None:
            out[name] = value.value if hasattr(value, "value") else value
    if event.detail:
        out["detail"] = dict(event.detail)
    return out


def show(store: Store, party_id: str) -> list[dict[str, Any]]:
    """Every migration of a party, newest first, each with its ordered audit timeline."""
    result = []
    for record in store.find_party(party_id):
        item = migration_dict(record)
        item["events"] = [event_dict(e) for e in store.events(record.id)]
        result.append(item)
    return result


def per_state_totals(counts: list[tuple[Direction, State, int]]) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for _, state, count in counts:
        totals[state.value] += count
    return dict(totals)
