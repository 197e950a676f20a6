"""What a step does when it runs again: it looks at the remote state first where the PSB
lets it, so a repeat after a lost answer or a crash changes nothing twice."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import httpx
import pytest

from migration_engine.clock import ManualClock
from migration_engine.engine.outcomes import Advance
from migration_engine.errors import LeaseLost
from migration_engine.machine import Direction, State, Trigger
from migration_engine.settings import Settings
from tests.support.steps import KEY, VAULT, ScriptedPsb, ctx_for, record, run

CONFIG = "/api/v1/peppol/config/party/0106:12345678"
PREPARE = "/api/v1/peppol/0106:12345678/prepareToMigrate"
NEW_KEY = "22BBcc##22BBcc##"


def test_a_first_submission_sends_the_put_without_a_look_first():
    script = ScriptedPsb({("PUT", "config/party"): httpx.Response(200, json={})})
    outcome = run(ctx_for(script), record(attempts=0))
    assert isinstance(outcome, Advance) and outcome.trigger is Trigger.TAKEOVER_REQUESTED
    assert script.calls() == [("PUT", CONFIG)]


def test_after_a_try_with_an_unknown_outcome_a_party_already_ours_gets_no_second_put():
    script = ScriptedPsb({("GET", "config/party"): httpx.Response(200, json={"id": "0106:12345678"})})
    outcome = run(ctx_for(script), record(attempts=2))
    assert isinstance(outcome, Advance) and outcome.trigger is Trigger.TAKEOVER_REQUESTED
    assert "earlier try" in outcome.detail["note"]
    assert script.calls() == [("GET", CONFIG)]


def test_after_a_failed_try_a_party_not_yet_ours_gets_the_put():
    script = ScriptedPsb({("PUT", "config/party"): httpx.Response(200, json={})})  # GET: 404
    outcome = run(ctx_for(script), record(attempts=1))
    assert isinstance(outcome, Advance) and outcome.detail["key"] == "11…$$"
    assert script.calls() == [("GET", CONFIG), ("PUT", CONFIG)]


def test_prepare_keeps_a_valid_stored_key_and_does_not_call_prepare_again():
    clock = ManualClock()
    script = ScriptedPsb({("GET", "prepareToMigrate"): httpx.Response(200, json={"migrationKey": NEW_KEY})})
    rec = record(direction=Direction.FROM_ECONNECT, state=State.REQUESTED, key_issued_at=clock.now())
    outcome = run(ctx_for(script, clock), rec)
    assert isinstance(outcome, Advance) and outcome.trigger is Trigger.KEY_PREPARED
    assert outcome.key_ciphertext is None and outcome.key_issued_at is None  # the stored key stays
    assert outcome.detail == {"key": "11…$$", "note": "a valid key is stored already"}
    assert script.calls() == []


def test_prepare_replaces_an_expired_key_being_reissued():
    clock = ManualClock()
    script = ScriptedPsb({("GET", "prepareToMigrate"): httpx.Response(200, json={"migrationKey": NEW_KEY})})
    issued = clock.now()
    clock.advance(Settings().keys.ttl_h * 3600)
    rec = record(direction=Direction.FROM_ECONNECT, state=State.REQUESTED, key_issued_at=issued)
    outcome = run(ctx_for(script, clock), rec)
    assert isinstance(outcome, Advance) and outcome.key_ciphertext is not None
    assert VAULT.decrypt(outcome.key_ciphertext, migration_id=rec.id, party_id=rec.party_id) == NEW_KEY != KEY
    assert outcome.key_issued_at == clock.now() == issued + timedelta(hours=Settings().keys.ttl_h)
    assert script.calls() == [("GET", PREPARE)]


@pytest.mark.parametrize(
    "rec",
    [record(), record(direction=Direction.FROM_ECONNECT, state=State.REQUESTED, key_ciphertext=None)],
    ids=["migration PUT", "prepareToMigrate"],
)
def test_a_step_whose_lease_is_gone_stops_before_the_call_not_to_repeat(rec):
    def lost():
        raise LeaseLost("another worker took it over")

    script = ScriptedPsb({})
    with pytest.raises(LeaseLost):
        run(dataclasses.replace(ctx_for(script), fence=lost), rec)
    assert script.calls() == []
