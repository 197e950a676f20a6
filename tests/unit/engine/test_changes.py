"""From a trigger to the one compare-and-set the store applies: pure, no store, no clock but ``NOW``."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from migration_engine.engine import changes
from migration_engine.engine.changes import Actor, ChangeBuilder
from migration_engine.engine.outcomes import Advance, Fail, Wait
from migration_engine.engine.retry import RetryPolicy
from migration_engine.errors import PsbTransientError, TransitionError
from migration_engine.machine import Direction, State, Trigger
from migration_engine.settings import Settings, load_settings
from migration_engine.store import UNCHANGED, Change, EventIn, MigrationRecord
from tests.support.records import migration_record

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
ISSUED = NOW - timedelta(hours=5)
IN, OUT = Direction.TO_ECONNECT, Direction.FROM_ECONNECT
WORKER = "host-1:4242"


def settings(**env: str) -> Settings:
    return load_settings(env={"PEPPOL_MIGRATE_" + k.upper(): v for k, v in env.items()})


SETTINGS = settings(takeover__poll_s="45", takeover__deadline_h="72", keys__ttl_h="168", retry__max_attempts="4")
API_CALL = EventIn(kind="api_call", actor=WORKER, http_method="PUT", http_path="/config/party", http_status=200)


def record(direction: Direction = IN, state: State = State.TAKEN_OVER, **overrides: object) -> MigrationRecord:
    fields: dict[str, object] = dict(
        id=11,
        batch_name="spring",
        direction=direction,
        state=state,
        version=7,
        key_ciphertext="gAAAA-ciphertext",
        next_run_at=NOW,
        lease_owner=WORKER,
        lease_until=NOW + timedelta(minutes=5),
        created_at=NOW - timedelta(days=1),
        updated_at=NOW - timedelta(minutes=1),
    )
    return migration_record(**(fields | overrides))


def worker(s: Settings = SETTINGS) -> ChangeBuilder:
    return ChangeBuilder(worker_id=WORKER, settings=s, retry=RetryPolicy(s.retry, rng=random.Random(7)))


def own_event(change: Change) -> EventIn:
    """The change's own event: the last one, after the step's API calls."""
    return change.events[-1]


def assert_compares(change: Change, rec: MigrationRecord, lease_owner: str | None) -> None:
    assert (change.migration_id, change.expected_state, change.expected_version) == (rec.id, rec.state, rec.version)
    assert change.lease_owner == lease_owner


# ---- the worker: Advance -------------------------------------------------------------------


def test_advance_moves_by_the_table_schedules_and_clears_errors():
    rec = record(state=State.TAKEN_OVER, attempts=2, last_error="503 earlier", last_error_code="HTTP503")
    change = worker().for_outcome(rec, Advance(Trigger.CAPABILITIES_APPLIED, detail={"hooks": 2}), [API_CALL], NOW)
    assert_compares(change, rec, WORKER)
    assert change.new_state is State.CAPABILITIES_CONFIGURED
    assert (change.next_run_at, change.deadline_at) == (NOW, None)
    assert (change.attempts, change.last_error, change.last_error_code, change.failed_state) == (0, None, None, None)
    assert change.key_ciphertext is UNCHANGED and change.key_issued_at is UNCHANGED
    assert change.events[0] == API_CALL
    assert own_event(change) == EventIn(
        kind="transition",
        actor=WORKER,
        from_state=State.TAKEN_OVER,
        to_state=State.CAPABILITIES_CONFIGURED,
        trigger=Trigger.CAPABILITIES_APPLIED,
        detail={"hooks": 2},
    )


def test_advance_into_a_deadlined_state_gets_its_deadline():
    change = worker().for_outcome(record(state=State.KEY_ISSUED), Advance(Trigger.TAKEOVER_REQUESTED), [], NOW)
    assert change.new_state is State.TAKEOVER_SUBMITTED
    assert change.deadline_at == NOW + timedelta(hours=72)


def test_advance_with_a_new_key_stores_it_and_counts_the_deadline_from_its_issue():
    rec = record(OUT, State.REQUESTED, key_ciphertext=None)
    prepared = Advance(Trigger.KEY_PREPARED, key_ciphertext="gAAAA-new", key_issued_at=ISSUED)
    change = worker().for_outcome(rec, prepared, [], NOW)
    assert change.new_state is State.KEY_ISSUED
    assert (change.key_ciphertext, change.key_issued_at) == ("gAAAA-new", ISSUED)
    assert change.next_run_at == NOW  # outbox handoff: hand the key over now
    manual = worker(settings(handoff__mode="manual")).for_outcome(rec, prepared, [], NOW)
    assert manual.next_run_at is None  # waits for `keys export`


def test_handed_off_key_waits_one_poll_with_the_key_ttl_as_deadline():
    rec = record(OUT, State.KEY_ISSUED, key_issued_at=ISSUED)
    change = worker().for_outcome(rec, Advance(Trigger.KEY_HANDED_OFF), [], NOW)
    assert change.new_state is State.KEY_DELIVERED
    assert change.next_run_at == NOW + timedelta(seconds=45)
    assert change.deadline_at == ISSUED + timedelta(hours=168)


def test_a_move_the_table_does_not_have_is_refused():
    with pytest.raises(TransitionError):
        worker().for_outcome(record(OUT, State.KEY_ISSUED), Advance(Trigger.TAKEOVER_REQUESTED), [], NOW)


# ---- the worker: Fail and Wait ----------------------------------------------------------------


def test_fail_into_needs_attention_remembers_where_and_why():
    rec = record(state=State.TAKEOVER_SUBMITTED, deadline_at=NOW)
    fail = Fail(Trigger.FAIL, reason="not served by the deadline", code="DEADLINE", detail={"seen": "other"})
    change = worker().for_outcome(rec, fail, [API_CALL], NOW)
    assert change.new_state is State.NEEDS_ATTENTION
    assert change.failed_state is State.TAKEOVER_SUBMITTED
    assert (change.last_error, change.last_error_code) == ("not served by the deadline", "DEADLINE")
    assert (change.next_run_at, change.deadline_at, change.attempts) == (None, None, 0)
    event = own_event(change)
    assert (event.kind, event.trigger, event.to_state) == ("transition", Trigger.FAIL, State.NEEDS_ATTENTION)
    assert event.detail == {"seen": "other", "reason": "not served by the deadline", "code": "DEADLINE"}


def test_a_refused_key_records_the_reason_but_no_failed_state():
    change = worker().for_outcome(
        record(state=State.KEY_ISSUED), Fail(Trigger.KEY_REFUSED, reason="Migration failed", code="API400"), [], NOW
    )
    assert change.new_state is State.KEY_REJECTED
    assert (change.last_error_code, change.failed_state, change.next_run_at) == ("API400", None, None)


def test_wait_stays_until_its_time_with_an_observation():
    rec = record(state=State.TAKEOVER_SUBMITTED, attempts=1)
    until = NOW + timedelta(seconds=90)
    change = worker().for_outcome(rec, Wait(until=until, detail={"served_by": "other"}), [API_CALL], NOW)
    assert_compares(change, rec, WORKER)
    assert change.new_state is None and change.next_run_at == until
    assert change.deadline_at is UNCHANGED and change.failed_state is UNCHANGED
    event = own_event(change)
    assert (event.kind, event.actor, event.from_state, event.to_state) == (
        "observation",
        WORKER,
        State.TAKEOVER_SUBMITTED,
        State.TAKEOVER_SUBMITTED,
    )
    assert event.detail == {"served_by": "other"} and change.events[0] == API_CALL


# ---- the worker: transient errors --------------------------------------------------------------


def test_a_transient_error_is_retried_later_with_the_attempt_counted():
    rec = record(state=State.KEY_ISSUED, attempts=1)
    # Retry-After beyond retry.max_s: the policy waits exactly max_s, whatever its jitter.
    exc = PsbTransientError("busy", status=503, retry_after_s=10_000)
    change = worker().for_error(rec, exc, [API_CALL], NOW)
    retry_at = NOW + timedelta(seconds=SETTINGS.retry.max_s)
    assert_compares(change, rec, WORKER)
    assert change.new_state is None
    assert (change.next_run_at, change.attempts) == (retry_at, 2)
    assert (change.last_error, change.last_error_code) == (str(exc), "HTTP503")
    event = own_event(change)
    assert (event.kind, event.from_state, event.to_state) == ("error", State.KEY_ISSUED, State.KEY_ISSUED)
    assert event.detail == {"error": str(exc), "code": "HTTP503", "attempt": 2, "retry_at": retry_at.isoformat()}


def test_after_max_attempts_the_worker_gives_up_into_needs_attention():
    rec = record(state=State.KEY_ISSUED, attempts=SETTINGS.retry.max_attempts - 1)
    change = worker().for_error(rec, PsbTransientError("still busy", code="API503"), [API_CALL], NOW)
    assert change.new_state is State.NEEDS_ATTENTION and change.failed_state is State.KEY_ISSUED
    assert change.attempts == SETTINGS.retry.max_attempts
    assert change.last_error == f"gave up after {SETTINGS.retry.max_attempts} attempts: [API503] still busy"
    assert change.last_error_code == "API503" and change.next_run_at is None
    assert own_event(change).trigger is Trigger.FAIL


# ---- patient polls: only consecutive transient errors give up --------------------------------


def after(rec: MigrationRecord, change: Change) -> MigrationRecord:
    """The record as the store leaves it once ``change`` is applied (the fields this module writes)."""
    names = ("attempts", "last_error", "last_error_code", "next_run_at", "deadline_at", "failed_state")
    written = {name: getattr(change, name) for name in names if getattr(change, name) is not UNCHANGED}
    state = rec.state if change.new_state is None else change.new_state
    return replace(rec, state=state, version=rec.version + 1, **written)


@pytest.mark.parametrize(("direction", "state"), [(OUT, State.KEY_DELIVERED), (IN, State.TAKEOVER_SUBMITTED)])
def test_a_successful_poll_resets_the_error_count_and_clears_the_last_error(direction, state):
    rec = record(direction, state, attempts=3, last_error="[HTTP503] busy", last_error_code="HTTP503")
    until = NOW + timedelta(minutes=15)
    change = worker().for_outcome(rec, Wait(until=until, detail={"access_points": ["x"]}), [API_CALL], NOW)
    assert change.new_state is None and change.next_run_at == until
    assert (change.attempts, change.last_error, change.last_error_code) == (0, None, None)
    assert own_event(change).kind == "observation"


def test_errors_spread_among_successful_polls_never_give_up():
    """Far more errors than max_attempts (4), but never max_attempts of them in a row."""
    poll, w = Wait(until=NOW + timedelta(minutes=15)), worker()
    rec = record(OUT, State.KEY_DELIVERED, key_issued_at=ISSUED, deadline_at=ISSUED + timedelta(hours=168))
    errors = 0
    for _ in range(10):
        for _ in range(SETTINGS.retry.max_attempts - 1):
            rec = after(rec, w.for_error(rec, PsbTransientError("busy", status=503), [API_CALL], NOW))
            errors += 1
        assert rec.state is State.KEY_DELIVERED and rec.attempts == SETTINGS.retry.max_attempts - 1
        rec = after(rec, w.for_outcome(rec, poll, [API_CALL], NOW))
        assert (rec.attempts, rec.last_error) == (0, None)
    assert errors == 10 * (SETTINGS.retry.max_attempts - 1) > SETTINGS.retry.max_attempts
    assert rec.state is State.KEY_DELIVERED


def test_max_attempts_consecutive_errors_after_a_successful_poll_still_give_up():
    w = worker()
    rec = record(IN, State.TAKEOVER_SUBMITTED, attempts=2, deadline_at=NOW + timedelta(hours=72))
    rec = after(rec, w.for_outcome(rec, Wait(until=NOW + timedelta(seconds=45)), [API_CALL], NOW))
    for n in range(1, SETTINGS.retry.max_attempts + 1):
        rec = after(rec, w.for_error(rec, PsbTransientError("down", code="API503"), [API_CALL], NOW))
        if n < SETTINGS.retry.max_attempts:
            assert (rec.state, rec.attempts) == (State.TAKEOVER_SUBMITTED, n)
    assert rec.state is State.NEEDS_ATTENTION and rec.failed_state is State.TAKEOVER_SUBMITTED
    assert rec.last_error == f"gave up after {SETTINGS.retry.max_attempts} attempts: [API503] down"


def test_a_successful_poll_after_an_operator_retry_clears_the_error_retry_kept():
    """Retry keeps the last error "until the step succeeds": a poll that got its answers is that."""
    rec = record(
        IN,
        State.NEEDS_ATTENTION,
        failed_state=State.TAKEOVER_SUBMITTED,
        attempts=4,
        last_error="gave up after 4 attempts: busy",
        last_error_code="HTTP503",
        next_run_at=None,
    )
    rec = after(rec, operator_move(rec, Trigger.RETRY, detail={"action": "retry"}))
    assert (rec.state, rec.attempts, rec.last_error_code) == (State.TAKEOVER_SUBMITTED, 0, "HTTP503")
    rec = after(rec, worker().for_outcome(rec, Wait(until=NOW + timedelta(seconds=45)), [API_CALL], NOW))
    assert (rec.state, rec.attempts, rec.last_error, rec.last_error_code) == (State.TAKEOVER_SUBMITTED, 0, None, None)


# ---- operators ---------------------------------------------------------------------------------

ALICE = Actor.operator("alice")


def operator_move(rec: MigrationRecord, trigger: Trigger, **kwargs: object) -> Change:
    return changes.move(rec, trigger, by=ALICE, settings=SETTINGS, now=NOW, **kwargs)  # type: ignore[arg-type]


def assert_operator_event(change: Change, rec: MigrationRecord, to: State, trigger: Trigger | None) -> EventIn:
    assert_compares(change, rec, None)  # no lease: an operator's change wins over a worker's late result
    (event,) = change.events
    assert (event.kind, event.actor, event.from_state, event.to_state, event.trigger) == (
        "operator",
        "alice",
        rec.state,
        to,
        trigger,
    )
    return event


@pytest.mark.parametrize("state", [State.REQUESTED, State.KEY_REJECTED])
def test_key_set_issues_the_key_and_schedules_it_now(state):
    rec = record(state=state, key_ciphertext=None, last_error="Migration failed", last_error_code="API400")
    change = operator_move(rec, Trigger.KEY_RECEIVED, detail={"key": "11…#D", "action": "key set"}, key_ciphertext="c")
    event = assert_operator_event(change, rec, State.KEY_ISSUED, Trigger.KEY_RECEIVED)
    assert event.detail == {"key": "11…#D", "action": "key set"}
    assert (change.new_state, change.key_ciphertext, change.next_run_at) == (State.KEY_ISSUED, "c", NOW)
    assert (change.attempts, change.last_error, change.last_error_code) == (0, None, None)
    assert change.key_issued_at is UNCHANGED  # an inbound key's issue time is the other provider's


def test_retry_resumes_in_the_failed_state_and_keeps_the_last_error_in_view():
    rec = record(
        state=State.NEEDS_ATTENTION,
        failed_state=State.TAKEOVER_SUBMITTED,
        attempts=4,
        last_error="gave up",
        last_error_code="HTTP503",
        next_run_at=None,
    )
    change = operator_move(rec, Trigger.RETRY, detail={"action": "retry"})
    assert_operator_event(change, rec, State.TAKEOVER_SUBMITTED, Trigger.RETRY)
    assert change.new_state is State.TAKEOVER_SUBMITTED and change.failed_state is None
    assert (change.attempts, change.next_run_at, change.deadline_at) == (0, NOW, NOW + timedelta(hours=72))
    assert change.last_error is UNCHANGED and change.last_error_code is UNCHANGED


def test_retry_outside_needs_attention_is_refused():
    with pytest.raises(TransitionError, match="only needs_attention"):
        operator_move(record(state=State.KEY_ISSUED), Trigger.RETRY)


def test_reissue_of_an_expired_outbound_key_starts_over():
    rec = record(OUT, State.KEY_EXPIRED, key_issued_at=ISSUED, next_run_at=None)
    change = operator_move(rec, Trigger.REISSUE, detail={"action": "retry"})
    assert_operator_event(change, rec, State.REQUESTED, Trigger.REISSUE)
    assert (change.new_state, change.next_run_at, change.deadline_at, change.attempts) == (
        State.REQUESTED,
        NOW,
        None,
        0,
    )


def test_cancel_stops_and_keeps_the_record_of_where_it_stood():
    rec = record(
        state=State.NEEDS_ATTENTION, failed_state=State.KEY_ISSUED, attempts=3, last_error="x", deadline_at=NOW
    )
    change = operator_move(rec, Trigger.CANCEL, detail={"action": "cancel"})
    assert_operator_event(change, rec, State.CANCELLED, Trigger.CANCEL)
    assert (change.new_state, change.next_run_at, change.deadline_at) == (State.CANCELLED, None, None)
    assert change.attempts is UNCHANGED and change.last_error is UNCHANGED and change.failed_state is UNCHANGED


def test_key_export_hands_the_key_off_by_the_table():
    rec = record(OUT, State.KEY_ISSUED, key_issued_at=ISSUED, next_run_at=None)
    change = operator_move(rec, Trigger.KEY_HANDED_OFF, detail={"action": "keys export"})
    assert_operator_event(change, rec, State.KEY_DELIVERED, Trigger.KEY_HANDED_OFF)
    assert change.next_run_at == NOW + timedelta(seconds=45)
    assert change.deadline_at == ISSUED + timedelta(hours=168)


@pytest.mark.parametrize(("paused", "action"), [(True, "pause"), (False, "resume")])
def test_pause_and_resume_keep_state_and_schedule(paused, action):
    rec = record(state=State.KEY_ISSUED, paused=not paused)
    change = changes.set_paused(rec, by=ALICE, paused=paused, action=action)
    event = assert_operator_event(change, rec, State.KEY_ISSUED, None)
    assert event.detail == {"action": action}
    assert change.paused is paused and change.new_state is None
    assert change.next_run_at is UNCHANGED and change.attempts is UNCHANGED


def test_an_operator_change_of_a_terminal_migration_is_refused():
    for trigger in (Trigger.CANCEL, Trigger.RETRY, Trigger.KEY_RECEIVED):
        with pytest.raises(TransitionError):
            operator_move(replace(record(), state=State.COMPLETED), trigger)
