"""What `status` and `show` print, as plain data (the CLI renders it as a table or JSON)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from migration_engine.backoffice.batch_pacing import status_pacing
from migration_engine.errors import InputError
from migration_engine.machine import TERMINAL_STATES, Direction, State, states
from migration_engine.store import AuditEvent, MigrationRecord, Store, WorkerStatus


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def status(store: Store, *, batch_name: str | None = None, now: datetime) -> dict[str, Any]:
    """Counts per direction and state, progress, throughput, the oldest waiting party, errors.

    ``InputError`` when ``batch_name`` names no batch: an empty selection would otherwise read
    as "0 of 0, 100% done", and a mistyped batch name must not look like a finished one.
    """
    if batch_name is not None and store.batch_info(batch_name) is None:
        raise InputError(f"there is no batch named {batch_name!r}")
    by_direction: dict[str, dict[str, int]] = {d.value: {s.value: 0 for s in states(d)} for d in Direction}
    for direction, state, count in store.counts(batch_name=batch_name):
        by_direction[direction.value][state.value] = by_direction[direction.value].get(state.value, 0) + count
    total = sum(sum(v.values()) for v in by_direction.values())
    completed = sum(v.get(State.COMPLETED.value, 0) for v in by_direction.values())
    done = sum(v.get(s.value, 0) for v in by_direction.values() for s in TERMINAL_STATES)

    # Aggregates in the database, never a pass over every row: `status` stays fast on 100k+.
    figures = store.status_figures(batch_name=batch_name, since=now - timedelta(hours=1))
    oldest = figures.oldest_waiting
    return {
        "batch": batch_name,
        "total": total,
        "completed": completed,
        "percent_done": round(100.0 * done / total, 1) if total else 100.0,
        "throughput_last_hour": figures.completed_since,
        "paused": figures.paused,
        "by_direction": by_direction,
        "needs_attention": sum(v.get(State.NEEDS_ATTENTION.value, 0) for v in by_direction.values()),
        "key_rejected": by_direction[Direction.TO_ECONNECT.value].get(State.KEY_REJECTED.value, 0),
        "oldest_waiting": None
        if oldest is None
        else {"party_id": oldest.party_id, "state": oldest.state.value, "since": _iso(oldest.since)},
        "errors_by_code": figures.errors_by_code,
        "findings": findings(store, batch_name=batch_name),
        "workers": workers(store, now=now),
        # each scheduled batch's window, wave usage and forecast (batch_pacing.py)
        "pacing": status_pacing(store, batch_name=batch_name, now=now),
    }


FINDINGS_SHOWN = 5


def findings(store: Store, *, batch_name: str | None = None) -> dict[str, Any]:
    """The reconciler's open findings: how many per kind and the oldest few (engine/reconciler.py)."""
    summary = store.open_findings(batch_name=batch_name, first=FINDINGS_SHOWN)
    return {
        "open": summary.total,
        "by_kind": summary.by_kind,
        "first": [
            {
                "party_id": f.party_id,
                "kind": f.kind,
                "direction": f.direction.value,
                "state": f.state.value,
                "batch": f.batch_name,
                "since": _iso(f.since),
                "summary": f.summary,
            }
            for f in summary.first
        ],
    }


WORKERS_SHOWN_FOR = timedelta(hours=1)


def worker_dict(worker: WorkerStatus, now: datetime) -> dict[str, Any]:
    """A worker as `status` shows it: alive (heartbeat not overdue, not stopped), its circuit."""
    return {
        "worker_id": worker.worker_id,
        "alive": worker.alive(now),
        "circuit": worker.circuit,
        "circuit_reason": worker.circuit_reason,
        "heartbeat_at": _iso(worker.heartbeat_at),
        "started_at": _iso(worker.started_at),
        "stopped_at": _iso(worker.stopped_at),
        "steps_run": worker.steps_run,
    }


def workers(store: Store, *, now: datetime) -> list[dict[str, Any]]:
    """Every worker heard of in the last hour (all batches), the live ones first."""
    found = [worker_dict(w, now) for w in store.workers(since=now - WORKERS_SHOWN_FOR)]
    return sorted(found, key=lambda w: not w["alive"])


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
        "current_provider": record.current_provider,
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
