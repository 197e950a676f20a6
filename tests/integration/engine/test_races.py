"""Operator actions racing a step, through the real worker, store (SQLite and PostgreSQL) and
sandbox: each action against each in-flight step kind. The step is held at its start (its
lease live) while the operator acts, then released. The action is requested, not made; the
step's outcome is applied first and the action after it, so the state is true to what the
PSB did, and the audit's api_call events match the PSB's call log call for call.
"""

from __future__ import annotations

import pytest

from migration_engine.backoffice import actions
from migration_engine.backoffice.importer import import_file
from migration_engine.engine import operator_changes
from migration_engine.engine import worker as worker_module
from migration_engine.engine.runtime import Runtime
from migration_engine.engine.steps import step_for
from migration_engine.errors import TransitionError
from migration_engine.machine import State
from tests.support import engine_settings, kvk, seed_batch
from tests.support.races import StepGate, audited_calls, psb_calls, tick_until_held

LEASE_S = 6.0
NEW_KEY = "44AAbb%%44AAbb%%"
PARTY = kvk(7)


def migrate(tmp_path, sandbox, db_url, clock, kind) -> Runtime:
    """One party whose first step is the kind asked for: the migration PUT accepted or refused
    (inbound), or prepareToMigrate (outbound). Handoff manual: outbound stops in key_issued."""
    inbound = [PARTY] if kind.startswith("put") else []
    outbound = [] if inbound else [PARTY]
    wrong = [PARTY] if kind == "put-refused" else []
    seed_batch(sandbox.model, tmp_path / "b.csv", inbound=inbound, outbound=outbound, wrong_keys=wrong)
    env = {"PEPPOL_MIGRATE_HANDOFF__MODE": "manual", "PEPPOL_MIGRATE_WORKER__LEASE_S": str(LEASE_S)}
    rt = Runtime(engine_settings(db_url, sandbox.url, **env), clock=clock)
    rt.store.upgrade()
    import_file(rt, path=tmp_path / "b.csv", batch_name="b", dry_run=False, actor="test")
    return rt


def gate_first_step(monkeypatch, kind) -> StepGate:
    """Hold the migration PUT (inbound: the step of key_issued) or prepareToMigrate (outbound)."""
    gate = StepGate(step_for, state=State.REQUESTED if kind == "prepare" else State.KEY_ISSUED)
    monkeypatch.setattr(worker_module, "step_for", gate)  # the name the worker looks up
    return gate


def act(rt, action):
    store = rt.store
    if action == "key set":
        return actions.key_set(store, rt.vault(), rt.settings, party=PARTY, key=NEW_KEY, actor="alice")
    record = actions.active_migration(store, PARTY)
    return actions.operator_action(store, rt.settings, record=record, action=action, actor="alice")


def moves(events):
    return [
        (e.kind, e.actor, e.from_state.value, e.to_state.value)
        for e in events
        if e.kind in ("transition", "operator") and e.from_state != e.to_state
    ]


# kind, action -> the final state, paused, the moves after the request
S = State
ACCEPTED, REFUSED = ("key_issued", "takeover_submitted"), ("key_issued", "key_rejected")
PREPARED = ("requested", "key_issued")
CASES = {
    ("put-accepted", "cancel"): (S.CANCELLED, False, [ACCEPTED, ("takeover_submitted", "cancelled")]),
    ("put-accepted", "pause"): (S.TAKEOVER_SUBMITTED, True, [ACCEPTED]),
    ("put-accepted", "key set"): (S.TAKEOVER_SUBMITTED, False, [ACCEPTED]),
    ("put-refused", "cancel"): (S.CANCELLED, False, [REFUSED, ("key_rejected", "cancelled")]),
    ("put-refused", "pause"): (S.KEY_REJECTED, True, [REFUSED]),
    ("put-refused", "key set"): (S.KEY_ISSUED, False, [REFUSED, ("key_rejected", "key_issued")]),
    ("prepare", "cancel"): (S.CANCELLED, False, [PREPARED, ("key_issued", "cancelled")]),
    ("prepare", "pause"): (S.KEY_ISSUED, True, [PREPARED]),
}


@pytest.mark.parametrize(("kind", "action"), sorted(CASES))
def test_an_action_during_a_step_applies_after_its_outcome(tmp_path, sandbox, db_url, clock, monkeypatch, kind, action):
    want_state, want_paused, want_moves = CASES[kind, action]
    rt = migrate(tmp_path, sandbox, db_url, clock, kind)
    gate = gate_first_step(monkeypatch, kind)
    worker = rt.worker(worker_id="worker-a")
    tick_until_held(worker, gate)
    [before] = rt.store.find_party(PARTY)

    requested = act(rt, action)
    assert actions.requested(requested, action)
    assert requested.version == before.version and requested.state is before.state  # the step's result still applies
    with pytest.raises(TransitionError, match="already requested"):
        act(rt, "cancel" if action != "cancel" else "pause")
    gate.release.set()
    worker.close()

    [final] = rt.store.find_party(PARTY)
    events = rt.store.events(final.id)
    assert (final.state, final.paused, final.pending) == (want_state, want_paused, None)
    request_at = next(i for i, e in enumerate(events) if e.kind == "operator")
    after = moves(events[request_at:])
    assert [(a, b) for _, _, a, b in after] == want_moves
    # Who made each move: the worker its step's outcome, the operator the action after it.
    assert [who for _, who, _, _ in after] == (["worker-a", "alice"] if len(want_moves) == 2 else ["worker-a"])
    # The PSB's call log and the audit agree call for call, and every call is the worker's.
    assert audited_calls(events) == psb_calls(sandbox.model, PARTY) != []
    assert all(e.actor == "worker-a" for e in events if e.kind == "api_call")
    operator = [e for e in events if e.kind == "operator"]
    assert operator[0].detail["requested"] is True and operator[0].detail["action"] == action
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    last = operator[-1].detail
    if kind == "put-accepted" and action == "cancel":
        assert last["note"] == operator_changes.CANCEL_AFTER_TAKEOVER
        assert any(c[0] == "PUT" and c[2] == 200 for c in psb_calls(sandbox.model, PARTY))
    if kind == "prepare" and action == "cancel":
        assert last["note"] == operator_changes.CANCEL_WITH_KEY and final.key_ciphertext
        assert sandbox.model.party(PARTY)["migration"]["key"]  # still valid at the SML
    if kind == "put-accepted" and action == "key set":
        assert "accepted the key submitted before" in last["not_applied"]
        assert final.key_ciphertext == before.key_ciphertext
    if kind == "put-refused" and action == "key set":
        assert final.key_ciphertext != before.key_ciphertext and last["key"] != NEW_KEY
    everything = repr(events)
    assert NEW_KEY not in everything
    rt.close()


def test_actions_that_make_no_sense_in_flight_are_refused_at_once(tmp_path, sandbox, db_url, clock, monkeypatch):
    rt = migrate(tmp_path, sandbox, db_url, clock, "prepare")
    gate = gate_first_step(monkeypatch, "prepare")
    worker = rt.worker(worker_id="worker-a")
    assert worker.tick() == 1 and gate.started.wait(30)
    [before] = rt.store.find_party(PARTY)
    with pytest.raises(TransitionError, match="eConnect issues its key"):
        act(rt, "key set")
    with pytest.raises(TransitionError, match="only needs_attention"):
        act(rt, "retry")
    with pytest.raises(TransitionError, match="already running"):
        act(rt, "resume")
    [during] = rt.store.find_party(PARTY)
    assert during.pending is None and len(rt.store.events(during.id)) == len(rt.store.events(before.id))
    gate.release.set()
    worker.close()
    [final] = rt.store.find_party(PARTY)
    assert final.state is State.KEY_ISSUED and not [e for e in rt.store.events(final.id) if e.kind == "operator"]
    rt.close()


def test_a_lost_lease_still_records_the_calls_its_step_made(tmp_path, sandbox, db_url, clock, monkeypatch):
    rt = migrate(tmp_path, sandbox, db_url, clock, "put-accepted")
    gate = StepGate(step_for, state=State.TAKEOVER_SUBMITTED)
    monkeypatch.setattr(worker_module, "step_for", gate)
    a, b = rt.worker(worker_id="worker-a"), rt.worker(worker_id="worker-b")
    tick_until_held(a, gate)  # the key step and the PUT ran; held at the first takeover poll
    clock.advance(LEASE_S + 1)  # worker-a is stuck: its lease runs out, worker-b polls in its place
    assert b.tick() == 1
    b.close()
    gate.release.set()  # worker-a's poll goes out after all: its result cannot be applied
    a.close()

    [final] = rt.store.find_party(PARTY)
    events = rt.store.events(final.id)
    since_b = next(i for i, e in enumerate(events) if e.actor == "worker-b")
    late = [e for e in events[since_b:] if e.actor == "worker-a"]  # the held poll's, after worker-b's
    assert late and all(e.kind == "api_call" and e.detail["not_applied"] == worker_module.NOT_APPLIED for e in late)
    assert a.stale_discarded == 1
    assert audited_calls(events) == psb_calls(sandbox.model, PARTY)
    assert rt.store.verify_audit() == []
    rt.close()


def test_a_request_whose_worker_stopped_is_applied_by_the_next_claim(tmp_path, sandbox, db_url, clock, monkeypatch):
    rt = migrate(tmp_path, sandbox, db_url, clock, "prepare")
    gate = gate_first_step(monkeypatch, "prepare")
    a = rt.worker(worker_id="worker-a")
    assert a.tick() == 1 and gate.started.wait(30)
    assert actions.requested(act(rt, "cancel"), "cancel")
    clock.advance(LEASE_S + 1)  # worker-a stops renewing (it died, say)
    with rt.worker(worker_id="worker-b") as b:
        assert b.tick() == 1  # the request, not the step
    [cancelled] = rt.store.find_party(PARTY)
    assert cancelled.state is State.CANCELLED and cancelled.pending is None
    assert psb_calls(sandbox.model, PARTY) == []  # worker-b ran no step
    gate.release.set()  # worker-a wakes up: its fence stops it before prepareToMigrate
    a.close()
    [final] = rt.store.find_party(PARTY)
    events = rt.store.events(final.id)
    assert final.state is State.CANCELLED
    assert events[-1].detail["note_worker"] == operator_changes.WORKER_STOPPED and events[-1].actor == "alice"
    assert audited_calls(events) == psb_calls(sandbox.model, PARTY) == []
    rt.close()
