"""The one way a trigger becomes a ``Change``: the move, its schedule, its bookkeeping, its audit event.

Every move of a migration, whoever makes it, goes through ``move``: the worker (a step's
outcome, or a retry policy that gave up), the operator actions (key set, retry, cancel) and
the key export. So the next state always comes from the state tables (``machine.next_state``,
retry going back to the state it failed in), the schedule and deadline of the new state always
from ``due_times``, and the fields a move resets or keeps follow one rule (see ``move``).
Changes that keep the state (a worker's wait or transient error, an operator's pause and
resume) go through ``stay``.

A poll is patient: ``retry.max_attempts`` counts *consecutive* transient failures. A step that
got its answers and chose to look again later (a ``Wait``) starts the count afresh, so the odd
PSB error spread over a week of polls never adds up to a give-up; only a real outage (that
many failures in a row) or the state's deadline (which the step checks on every poll that gets
an answer) ends the wait in needs_attention.

Who makes the change is an ``Actor``: it names the audit events; a worker's change also
carries its lease, so the compare-and-set refuses it once the lease is lost, while an
operator's holds none and wins over a worker's late result.

Pure bookkeeping: no I/O, and the time comes in as ``now``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from migration_engine import machine
from migration_engine.engine import due_times
from migration_engine.engine.outcomes import Advance, Fail, Outcome, Wait
from migration_engine.engine.retry import GiveUp, RetryPolicy
from migration_engine.errors import PsbAuthError, PsbTransientError
from migration_engine.machine import State, Trigger
from migration_engine.settings import Settings
from migration_engine.store import Change, EventIn, MigrationRecord

# A fresh start in a state: the attempts count again from zero, but the last error stays
# visible to the operator (and in reports) until the step succeeds.
_RESTARTS = frozenset({Trigger.RETRY, Trigger.REISSUE})


@dataclass(frozen=True)
class Actor:
    """Who makes a change: the actor of its audit events and, for a worker, the lease it must hold."""

    name: str
    lease_owner: str | None  # a worker's id: the row must still be leased by it
    event_kind: str  # the audit kind of its moves: "transition" (worker) or "operator"

    @classmethod
    def worker(cls, worker_id: str) -> Actor:
        return cls(name=worker_id, lease_owner=worker_id, event_kind="transition")

    @classmethod
    def operator(cls, name: str) -> Actor:
        return cls(name=name, lease_owner=None, event_kind="operator")


@dataclass(frozen=True)
class Problem:
    """Why a move is a failure: the text an operator reads and its code."""

    reason: str
    code: str | None = None


def move(
    record: MigrationRecord,
    trigger: Trigger,
    *,
    by: Actor,
    settings: Settings,
    now: datetime,
    detail: Mapping[str, Any] | None = None,
    events: Sequence[EventIn] = (),
    problem: Problem | None = None,
    attempts: int = 0,
    key_ciphertext: str | None = None,
    key_issued_at: datetime | None = None,
) -> Change:
    """Fire ``trigger`` on ``record``: the compare-and-set into the state the table names.

    ``TransitionError`` when the table has no such move. What the change writes:

    - the new state, and its schedule and deadline from ``due_times``;
    - ``cancel`` stops the migration and leaves its attempts, last error and failed state as
      they were: the record of where it stood when it was stopped;
    - a ``problem`` (a failure) records its reason and code and ``attempts`` (the tries that
      led to it), and a move into needs_attention remembers the state it failed in;
    - ``retry`` and ``reissue`` start the state afresh (attempts 0) and keep the last error
      until the step succeeds; every other move clears it;
    - ``failed_state`` is kept only in needs_attention (and by cancel, as above);
    - a new key, when given, is stored (``key_ciphertext``, ``key_issued_at`` when known).

    ``events`` (the step's API calls) come first, then the move's own event with ``detail``
    (and a problem's reason and code).
    """
    dest = machine.next_state(record.direction, record.state, trigger, failed_state=record.failed_state)
    has_key = record.key_ciphertext is not None or key_ciphertext is not None
    fields: dict[str, Any] = {
        "new_state": dest,
        "next_run_at": due_times.next_run_at(record.direction, dest, has_key=has_key, settings=settings, now=now),
        "deadline_at": due_times.deadline_at(
            record.direction, dest, key_issued_at=key_issued_at or record.key_issued_at, settings=settings, now=now
        ),
    }
    if trigger is not Trigger.CANCEL:
        fields["attempts"] = attempts
        fields["failed_state"] = record.state if dest is State.NEEDS_ATTENTION else None
        if problem is not None:
            fields.update(last_error=problem.reason, last_error_code=problem.code)
        elif trigger not in _RESTARTS:
            fields.update(last_error=None, last_error_code=None)
    if key_ciphertext is not None:
        fields["key_ciphertext"] = key_ciphertext
    if key_issued_at is not None:
        fields["key_issued_at"] = key_issued_at
    shown: dict[str, Any] = dict(detail or {})
    if problem is not None:
        shown.update(reason=problem.reason, code=problem.code)
    event = EventIn(
        kind=by.event_kind,
        actor=by.name,
        from_state=record.state,
        to_state=dest,
        trigger=trigger,
        detail=shown,
    )
    return _change(record, by, [*events, event], **fields)


def stay(
    record: MigrationRecord,
    *,
    by: Actor,
    kind: str,
    detail: Mapping[str, Any],
    events: Sequence[EventIn] = (),
    **fields: Any,
) -> Change:
    """A change that keeps the state (a wait, a transient error, a pause): ``fields`` and one ``kind`` event."""
    event = EventIn(kind=kind, actor=by.name, from_state=record.state, to_state=record.state, detail=dict(detail))
    return _change(record, by, [*events, event], **fields)


def set_paused(record: MigrationRecord, *, by: Actor, paused: bool, action: str) -> Change:
    """An operator's pause or resume: the worker skips a paused migration, its state and schedule stay."""
    return stay(record, by=by, kind=by.event_kind, detail={"action": action}, paused=paused)


def _change(record: MigrationRecord, by: Actor, events: list[EventIn], **fields: Any) -> Change:
    return Change(
        migration_id=record.id,
        expected_state=record.state,
        expected_version=record.version,
        lease_owner=by.lease_owner,
        events=events,
        **fields,
    )


class ChangeBuilder:
    """The changes of one worker (its id is the lease owner and the events' actor)."""

    def __init__(self, *, worker_id: str, settings: Settings, retry: RetryPolicy) -> None:
        self.worker_id = worker_id
        self._by = Actor.worker(worker_id)
        self._settings = settings
        self._retry = retry

    def for_error(
        self, record: MigrationRecord, exc: PsbTransientError | PsbAuthError, events: list[EventIn], now: datetime
    ) -> Change:
        """A transient error: try again at the retry policy's time, or after ``max_attempts``
        failures in a row (a successful poll in between starts the count afresh) fail for good."""
        retry_after = getattr(exc, "retry_after_s", None)
        decision = self._retry.decide(attempts_so_far=record.attempts, now=now, retry_after_s=retry_after)
        code = exc.code or (f"HTTP{exc.status}" if exc.status else type(exc).__name__)
        if isinstance(decision, GiveUp):
            reason = f"gave up after {decision.attempts} attempts: {exc}"
            return self.for_outcome(
                record, Fail(Trigger.FAIL, reason=reason, code=code), events, now, attempts=decision.attempts
            )
        return stay(
            record,
            by=self._by,
            kind="error",
            detail={
                "error": str(exc),
                "code": code,
                "attempt": decision.attempts,
                "retry_at": decision.when.isoformat(),
            },
            events=events,
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
        """A step's outcome: a ``Wait`` stays until its ``until``; an ``Advance`` or ``Fail`` moves.

        A ``Wait`` is a step that succeeded (it got its answers and chose to look again later),
        so it resets the transient-error count and clears the last error: the trouble is over,
        and an error left on a healthy party would send the operator after a problem that no
        longer exists (the audit trail's ``error`` events keep the history). This is the
        "until the step succeeds" that ``retry`` and ``reissue`` keep the last error for.
        """
        if isinstance(outcome, Wait):
            return stay(
                record,
                by=self._by,
                kind="observation",
                detail=outcome.detail,
                events=events,
                next_run_at=outcome.until,
                attempts=0,
                last_error=None,
                last_error_code=None,
            )
        problem = Problem(outcome.reason, outcome.code) if isinstance(outcome, Fail) else None
        advance = outcome if isinstance(outcome, Advance) else None
        return move(
            record,
            outcome.trigger,
            by=self._by,
            settings=self._settings,
            now=now,
            detail=outcome.detail,
            events=events,
            problem=problem,
            attempts=attempts or 0,
            key_ciphertext=advance.key_ciphertext if advance else None,
            key_issued_at=advance.key_issued_at if advance else None,
        )
