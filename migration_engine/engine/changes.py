"""From what a step did to the one ``Change`` the store applies: move, schedule, audit events.

The worker runs a step, then hands its outcome (or the transient error it raised) and the
step's API calls here; the result is the compare-and-set (on the record's state, version
and this worker's lease) with every audit event of the step. Pure bookkeeping: no I/O, and
the time comes in as ``now``.

- an ``Advance`` or ``Fail`` fires its trigger in the state table; the new state's schedule
  and deadline come from ``scheduling``; a ``Fail`` into needs_attention remembers where;
- a ``Wait`` stays, to run again at its ``until``;
- a transient error becomes "try again at T" (``RetryPolicy``), or after ``max_attempts``
  a ``Fail`` into needs_attention with the last error.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from migration_engine import machine
from migration_engine.engine import due_times
from migration_engine.engine.outcomes import Advance, Fail, Outcome, Wait
from migration_engine.engine.retry import GiveUp, RetryPolicy
from migration_engine.errors import PsbAuthError, PsbTransientError
from migration_engine.machine import State, Trigger
from migration_engine.psb.client import ApiCall
from migration_engine.settings import Settings
from migration_engine.store import Change, EventIn, MigrationRecord


def call_event(call: ApiCall, actor: str) -> EventIn:
    return EventIn(
        kind="api_call",
        actor=actor,
        http_method=call.method,
        http_path=call.path,
        http_status=call.status,
        duration_ms=round(call.duration_ms, 1),
        request_id=call.request_id,
        detail={"error_code": call.error_code} if call.error_code else {},
    )


class ChangeBuilder:
    """Builds the changes of one worker (its id is the lease owner and the events' actor)."""

    def __init__(self, *, worker_id: str, settings: Settings, retry: RetryPolicy) -> None:
        self.worker_id = worker_id
        self._settings = settings
        self._retry = retry

    def _base(self, record: MigrationRecord, events: list[EventIn], **fields: Any) -> Change:
        return Change(
            migration_id=record.id,
            expected_state=record.state,
            expected_version=record.version,
            lease_owner=self.worker_id,
            events=events,
            **fields,
        )

    def for_error(
        self, record: MigrationRecord, exc: PsbTransientError | PsbAuthError, events: list[EventIn], now: datetime
    ) -> Change:
        retry_after = getattr(exc, "retry_after_s", None)
        decision = self._retry.decide(attempts_so_far=record.attempts, now=now, retry_after_s=retry_after)
        code = exc.code or (f"HTTP{exc.status}" if exc.status else type(exc).__name__)
        if isinstance(decision, GiveUp):
            reason = f"gave up after {decision.attempts} attempts: {exc}"
            return self.for_outcome(
                record, Fail(Trigger.FAIL, reason=reason, code=code), events, now, attempts=decision.attempts
            )
        events.append(
            EventIn(
                kind="error",
                actor=self.worker_id,
                from_state=record.state,
                to_state=record.state,
                detail={
                    "error": str(exc),
                    "code": code,
                    "attempt": decision.attempts,
                    "retry_at": decision.when.isoformat(),
                },
            )
        )
        return self._base(
            record,
            events,
            next_run_at=decision.when,
            attempts=decision.attempts,
            last_error=str(exc),
            last_error_code=code,
        )

    def for_outcome(
        self,
        record: MigrationRecord,
        outcome: Outcome,
        events: list[EventIn],
        now: datetime,
        attempts: int | None = None,
    ) -> Change:
        if isinstance(outcome, Wait):
            events.append(
                EventIn(
                    kind="observation",
                    actor=self.worker_id,
                    from_state=record.state,
                    to_state=record.state,
                    detail=dict(outcome.detail),
                )
            )
            return self._base(record, events, next_run_at=outcome.until)
        dest = machine.next_state(record.direction, record.state, outcome.trigger)
        detail: dict[str, Any] = dict(outcome.detail)
        if isinstance(outcome, Fail):
            detail.update(reason=outcome.reason, code=outcome.code)
        events.append(
            EventIn(
                kind="transition",
                actor=self.worker_id,
                from_state=record.state,
                to_state=dest,
                trigger=outcome.trigger,
                detail=detail,
            )
        )
        key_issued_at = (
            outcome.key_issued_at if isinstance(outcome, Advance) and outcome.key_issued_at else record.key_issued_at
        )
        has_key = record.key_ciphertext is not None or (
            isinstance(outcome, Advance) and outcome.key_ciphertext is not None
        )
        fields: dict[str, Any] = {
            "new_state": dest,
            "next_run_at": due_times.next_run_at(
                record.direction, dest, has_key=has_key, settings=self._settings, now=now
            ),
            "deadline_at": due_times.deadline_at(
                record.direction, dest, key_issued_at=key_issued_at, settings=self._settings, now=now
            ),
            "attempts": attempts if attempts is not None else 0,
        }
        if isinstance(outcome, Advance):
            fields.update(last_error=None, last_error_code=None, failed_state=None)
            if outcome.key_ciphertext is not None:
                fields.update(key_ciphertext=outcome.key_ciphertext, key_issued_at=outcome.key_issued_at)
        else:
            fields.update(last_error=outcome.reason, last_error_code=outcome.code)
            if dest is State.NEEDS_ATTENTION:
                fields["failed_state"] = record.state
        return self._base(record, events, **fields)
