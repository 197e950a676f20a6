"""verify.peppol_network as a step guard: the PSB's word is not enough until the network agrees.

The steps run against a scripted PSB (tests.support.steps) and a scripted verifier; the verifier's
own matching, DNS and SMP work is tested in tests/unit/peppol and tests/integration/peppol."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import httpx
import pytest

from migration_engine.clock import ManualClock
from migration_engine.engine.outcomes import Advance, Fail, Wait
from migration_engine.errors import ConfigError
from migration_engine.machine import Direction, State, Trigger
from migration_engine.peppol.verification import CORE_DOCUMENT_TYPES, NetworkCheck
from migration_engine.settings import Settings, load_settings, with_overrides
from tests.support.steps import OUR_AP, ScriptedPsb, ctx_for, option, record, run

ON = {"peppol_network": True, "econnect_smp_host": "smp.econnect.test"}
PSB_SAYS_OURS = {("GET", "deliveryOption"): httpx.Response(200, json=[option(OUR_AP)])}
PSB_SAYS_GONE = {("GET", "deliveryOption"): httpx.Response(200, json=[option("https://ap.other.example/as4")])}


class ScriptedNetwork:
    """Answers every check with the next verdict; records what was asked."""

    def __init__(self, *verdicts: bool):
        self.verdicts = list(verdicts)
        self.asked: list[tuple] = []

    def _check(self, *asked) -> NetworkCheck:
        self.asked.append(asked)
        ok = self.verdicts.pop(0)
        return NetworkCheck(ok, {"sml": {"econnect": ok, "smp_url": "http://smp"}}, "" if ok else "not yet (DNS)")

    def inbound_takeover(self, party_id):
        return self._check("inbound_takeover", party_id)

    def outbound_takeover(self, party_id):
        return self._check("outbound_takeover", party_id)

    def inbound_published(self, party_id, required):
        return self._check("inbound_published", party_id, tuple(required))


def guarded(script, network, clock=None, verify=ON):
    ctx = ctx_for(script, clock=clock)
    return dataclasses.replace(ctx, settings=with_overrides(Settings(), verify=verify), network=network)


def test_inbound_takeover_waits_for_the_sml_although_the_psb_confirms():
    clock = ManualClock()
    network = ScriptedNetwork(False, True)
    rec = record(state=State.TAKEOVER_SUBMITTED, deadline_at=clock.now() + timedelta(hours=72))
    waiting = run(guarded(ScriptedPsb(PSB_SAYS_OURS), network, clock), rec)
    assert isinstance(waiting, Wait) and waiting.until is not None and waiting.until > clock.now()
    assert waiting.detail["network"]["sml"]["econnect"] is False
    assert waiting.detail["waiting_for"] == "not yet (DNS)"
    done = run(guarded(ScriptedPsb(PSB_SAYS_OURS), network, clock), rec)
    assert isinstance(done, Advance) and done.trigger is Trigger.TAKEOVER_CONFIRMED
    assert done.detail["network"]["sml"]["econnect"] is True
    assert network.asked == [("inbound_takeover", "0106:12345678")] * 2


def test_the_network_is_not_asked_before_the_psb_confirms():
    network = ScriptedNetwork()
    script = ScriptedPsb(PSB_SAYS_GONE)
    outcome = run(guarded(script, network), record(state=State.TAKEOVER_SUBMITTED))
    assert isinstance(outcome, Wait) and network.asked == []


def test_past_the_deadline_a_network_that_never_agrees_needs_attention():
    clock = ManualClock()
    rec = record(state=State.TAKEOVER_SUBMITTED, deadline_at=clock.now() - timedelta(seconds=1))
    outcome = run(guarded(ScriptedPsb(PSB_SAYS_OURS), ScriptedNetwork(False), clock), rec)
    assert isinstance(outcome, Fail) and outcome.trigger is Trigger.FAIL and outcome.code == "NETWORK_VERIFY"
    assert "not yet (DNS)" in outcome.reason and "network" in outcome.detail


def test_inbound_verify_asks_for_the_profiles_document_types():
    network = ScriptedNetwork(False, True)
    rec = record(state=State.PERMISSIONS_SET)
    assert isinstance(run(guarded(ScriptedPsb(PSB_SAYS_OURS), network), rec), Wait)
    done = run(guarded(ScriptedPsb(PSB_SAYS_OURS), network), rec)
    assert isinstance(done, Advance) and done.trigger is Trigger.VERIFIED
    # config/profiles/default.toml: invoices and invoiceResponse on, orders inherited.
    expected = (*CORE_DOCUMENT_TYPES["invoices"], *CORE_DOCUMENT_TYPES["invoiceResponse"])
    assert network.asked[0] == ("inbound_published", "0106:12345678", expected)


def test_outbound_takeover_waits_until_the_sml_points_elsewhere():
    network = ScriptedNetwork(False, True)
    rec = record(Direction.FROM_ECONNECT, State.KEY_DELIVERED)
    waiting = run(guarded(ScriptedPsb(PSB_SAYS_GONE), network), rec)
    assert isinstance(waiting, Wait) and waiting.detail["waiting_for"] == "not yet (DNS)"
    done = run(guarded(ScriptedPsb(PSB_SAYS_GONE), network), rec)
    assert isinstance(done, Advance) and done.trigger is Trigger.TAKEOVER_CONFIRMED
    assert network.asked == [("outbound_takeover", "0106:12345678")] * 2


def test_with_verification_off_a_verifier_is_never_asked():
    network = ScriptedNetwork()
    off = {"peppol_network": False}
    outcome = run(guarded(ScriptedPsb(PSB_SAYS_OURS), network, verify=off), record(state=State.TAKEOVER_SUBMITTED))
    assert isinstance(outcome, Advance) and "network" not in outcome.detail and network.asked == []


def test_verification_on_without_a_verifier_is_a_config_error():
    with pytest.raises(ConfigError, match="network verifier"):
        run(guarded(ScriptedPsb(PSB_SAYS_OURS), None), record(state=State.TAKEOVER_SUBMITTED))


def test_verification_on_needs_econnects_smp():
    with pytest.raises(ConfigError, match="econnect_smp_host"):
        load_settings(env={"PEPPOL_MIGRATE_VERIFY__PEPPOL_NETWORK": "true"})
