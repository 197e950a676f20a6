"""Steps decide; they never write. Each is checked against a scripted PSB (httpx.MockTransport),
including what a repeat after a crash does."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest

from migration_engine.clock import ManualClock
from migration_engine.engine.outcomes import Advance, Fail, Wait
from migration_engine.errors import PsbTransientError
from migration_engine.machine import Direction, State, Trigger
from migration_engine.settings import Settings
from tests.support.steps import KEY, OUR_AP, VAULT, ScriptedPsb, ctx_for, option, record, run


def test_submit_key_sends_the_key_once_and_advances():
    script = ScriptedPsb({("PUT", "config/party"): httpx.Response(200, json={"id": "0106:12345678"})})
    outcome = run(ctx_for(script), record())
    assert isinstance(outcome, Advance) and outcome.trigger is Trigger.TAKEOVER_REQUESTED
    [put] = script.requests
    assert json.loads(put.content) == {"migration": {"key": KEY}}
    assert KEY not in json.dumps(dict(outcome.detail))


@pytest.mark.parametrize("status", [400, 403, 404, 422])
def test_a_refused_key_is_rejected_with_the_psb_message_whatever_the_4xx(status):
    script = ScriptedPsb({("PUT", "config/party"): httpx.Response(status, json={"code": "X", "message": "bad key"})})
    outcome = run(ctx_for(script), record())
    assert isinstance(outcome, Fail) and outcome.trigger is Trigger.KEY_REFUSED
    assert "bad key" in outcome.reason and "key set" in outcome.reason
    assert script.calls()[-1] == ("GET", "/api/v1/peppol/config/party/0106:12345678")


def test_a_replayed_submission_that_already_won_is_not_called_rejected():
    script = ScriptedPsb(
        {
            ("PUT", "config/party"): httpx.Response(400, json={"code": "X", "message": "no migration record"}),
            ("GET", "config/party"): httpx.Response(200, json={"id": "0106:12345678"}),
        }
    )
    outcome = run(ctx_for(script), record())
    assert isinstance(outcome, Advance) and outcome.trigger is Trigger.TAKEOVER_REQUESTED


def test_transient_trouble_is_raised_for_the_retry_policy():
    script = ScriptedPsb({("PUT", "config/party"): httpx.Response(503, json={"code": "API503", "message": "busy"})})
    with pytest.raises(PsbTransientError):
        run(ctx_for(script), record())


def test_takeover_poll_waits_with_growing_intervals_then_confirms():
    clock = ManualClock()
    deadline = clock.now() + timedelta(hours=Settings().takeover.deadline_h)
    other = ScriptedPsb({("GET", "deliveryOption"): httpx.Response(200, json=[option("https://other/as4")])})
    first = run(ctx_for(other, clock), record(state=State.TAKEOVER_SUBMITTED, deadline_at=deadline))
    assert isinstance(first, Wait) and first.until == clock.now() + timedelta(seconds=Settings().takeover.poll_s)
    clock.advance(3600)
    later = run(ctx_for(other, clock), record(state=State.TAKEOVER_SUBMITTED, deadline_at=deadline))
    assert isinstance(later, Wait) and later.until is not None
    assert later.until - clock.now() == timedelta(seconds=Settings().takeover.poll_max_s)
    ours = ScriptedPsb({("GET", "deliveryOption"): httpx.Response(200, json=[option(OUR_AP)])})
    done = run(ctx_for(ours, clock), record(state=State.TAKEOVER_SUBMITTED, deadline_at=deadline))
    assert isinstance(done, Advance) and done.trigger is Trigger.TAKEOVER_CONFIRMED


def test_takeover_poll_gives_up_at_the_deadline():
    clock = ManualClock()
    other = ScriptedPsb({("GET", "deliveryOption"): httpx.Response(200, json=[option("https://other/as4")])})
    outcome = run(ctx_for(other, clock), record(state=State.TAKEOVER_SUBMITTED, deadline_at=clock.now()))
    assert isinstance(outcome, Fail) and outcome.trigger is Trigger.FAIL and outcome.code == "TAKEOVER_DEADLINE"


def test_configure_creates_only_missing_hooks_on_a_repeat():
    script = ScriptedPsb(
        {
            ("PUT", "config/party"): httpx.Response(200, json={}),
            ("GET", "/hook"): httpx.Response(200, json=[{"id": "1", "name": "invoice-received"}]),
        }
    )
    outcome = run(ctx_for(script), record(state=State.TAKEN_OVER))
    assert isinstance(outcome, Advance) and outcome.detail["hooks_created"] == []
    assert ("PUT", "/api/v1/0106:12345678/hook") not in script.calls()
    body = json.loads(script.requests[0].content)
    assert body == {
        "capabilities": {
            "invoices": {"state": "on"},
            "invoiceResponse": {"state": "on"},
            "orders": {"state": "inherited"},
        }
    }


def test_grant_puts_permissions_and_enrolls_the_card():
    script = ScriptedPsb(
        {
            ("PUT", "/user/"): lambda r: httpx.Response(200, json=json.loads(r.content)),
            ("PUT", "enroll"): httpx.Response(200, json={}),
        }
    )
    outcome = run(ctx_for(script), record(state=State.CAPABILITIES_CONFIGURED))
    assert isinstance(outcome, Advance) and outcome.trigger is Trigger.PERMISSIONS_GRANTED
    user_put = json.loads(script.requests[0].content)
    assert user_put["id"] == "0106:12345678" and user_put["permissions"]["canReceiveDocument"] is True
    card = json.loads(script.requests[1].content)["services"]["peppol"]["businessCard"]
    assert card["names"] == "Party" and card["countryCode"] == "NL"


def test_prepare_stores_the_key_encrypted_and_masks_it():
    script = ScriptedPsb({("GET", "prepareToMigrate"): httpx.Response(200, json={"migrationKey": KEY})})
    rec = record(direction=Direction.FROM_ECONNECT, state=State.REQUESTED, key_ciphertext=None)
    outcome = run(ctx_for(script), rec)
    assert isinstance(outcome, Advance) and outcome.trigger is Trigger.KEY_PREPARED
    assert outcome.key_ciphertext
    assert VAULT.decrypt(outcome.key_ciphertext, migration_id=rec.id, party_id=rec.party_id) == KEY
    assert KEY not in json.dumps(dict(outcome.detail))


def test_prepare_of_a_party_eConnect_does_not_serve_needs_attention():
    script = ScriptedPsb({})
    outcome = run(
        ctx_for(script), record(direction=Direction.FROM_ECONNECT, state=State.REQUESTED, key_ciphertext=None)
    )
    assert isinstance(outcome, Fail) and outcome.trigger is Trigger.FAIL


def test_outbound_key_expires_when_no_takeover_before_the_ttl():
    clock = ManualClock()
    script = ScriptedPsb({("GET", "deliveryOption"): httpx.Response(200, json=[option(OUR_AP)])})
    rec = record(direction=Direction.FROM_ECONNECT, state=State.KEY_DELIVERED, deadline_at=clock.now())
    outcome = run(ctx_for(script, clock), rec)
    assert isinstance(outcome, Advance) and outcome.trigger is Trigger.KEY_TIMED_OUT


def test_outbound_cleanup_removes_hooks_and_permissions_and_tolerates_gone_ones():
    script = ScriptedPsb(
        {
            ("GET", "/hook"): httpx.Response(200, json=[{"id": "h1", "name": "old"}]),
            ("DELETE", "/hook/h1"): httpx.Response(200),
            ("DELETE", "/user/"): httpx.Response(404, json={"code": "API404", "message": "gone"}),
        }
    )
    outcome = run(ctx_for(script), record(direction=Direction.FROM_ECONNECT, state=State.TAKEN_OVER))
    assert isinstance(outcome, Advance) and outcome.trigger is Trigger.VERIFIED
    assert outcome.detail["hooks_removed"] == ["old"]
    assert outcome.detail["permissions_removed"] == ["sandbox-user"]
