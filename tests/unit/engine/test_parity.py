"""Receive parity's decisions: the capability map, what to configure, the business card carried,
the verdict under each policy, and the capabilities step's PUT with a snapshot."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import httpx
import pytest

from migration_engine.engine import parity
from migration_engine.engine.outcomes import Advance
from migration_engine.errors import ConfigError
from migration_engine.machine import Direction, State
from migration_engine.peppol.snapshot import NOT_REGISTERED, REGISTERED, BusinessCardSeen, PartySnapshot, ServiceSeen
from migration_engine.peppol.verification import CORE_DOCUMENT_TYPES
from migration_engine.profiles import BusinessCardSpec, CapabilityMap
from migration_engine.settings import Settings, load_settings
from tests.support.steps import ScriptedPsb, ctx_for, record, run

SHIPPED = CapabilityMap.load()
INVOICE, CREDIT_NOTE = CORE_DOCUMENT_TYPES["invoices"]
[IMR] = CORE_DOCUMENT_TYPES["invoiceResponse"]
[ORDER] = CORE_DOCUMENT_TYPES["orders"]
[MLR] = CORE_DOCUMENT_TYPES["reviews"]
DESPATCH = (
    "urn:oasis:names:specification:ubl:schema:xsd:DespatchAdvice-2::DespatchAdvice"
    "##urn:fdc:peppol.eu:poacc:trns:despatch_advice:3::2.1"
)
ORDERING = "urn:fdc:peppol.eu:poacc:bis:ordering:3"
ORDER_ONLY = "urn:fdc:peppol.eu:poacc:bis:order_only:3"
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def snap(*services: ServiceSeen, card: BusinessCardSeen | None = None, lookup: str = REGISTERED) -> PartySnapshot:
    return PartySnapshot(
        party_id="0106:12345678", taken_at=T0, lookup=lookup, services=services, business_card=card
    )


# ---- the map -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document_type", "processes", "capabilities"),
    [
        (INVOICE, (), ["invoices"]),
        (CREDIT_NOTE, (), ["invoices"]),
        (f"busdox-docid-qns::{INVOICE}", (), ["invoices"]),  # the scheme is ignored
        (IMR, (), ["invoiceResponse"]),
        (MLR, (), ["reviews"]),
        (ORDER, (ORDERING,), ["orders"]),
        (ORDER, (ORDER_ONLY,), ["orderOnly"]),
        (ORDER, (), ["orders"]),
        (ORDER, (ORDERING, ORDER_ONLY), ["orders", "orderOnly"]),
        (DESPATCH, (), []),
    ],
)
def test_the_shipped_map_covers_the_bis3_types(document_type, processes, capabilities):
    assert SHIPPED.capabilities_for(document_type, processes) == capabilities


def test_every_core_document_type_maps_back_to_its_capability():
    for capability, types in CORE_DOCUMENT_TYPES.items():
        for dt in types:
            process = ORDER_ONLY if capability == "orderOnly" else ORDERING
            assert capability in SHIPPED.capabilities_for(dt, (process,)), (capability, dt)


def test_parity_capability_map_setting_replaces_the_shipped_map(tmp_path):
    own = tmp_path / "map.toml"
    own.write_text(f'[[document_types]]\nid = "{DESPATCH}"\ncapability = "orders"\n', encoding="utf-8")
    settings = load_settings(env={"PEPPOL_MIGRATE_PARITY__CAPABILITY_MAP": str(own)})
    cmap = CapabilityMap.load(settings.parity.capability_map)
    assert cmap.capabilities_for(DESPATCH) == ["orders"]
    assert cmap.capabilities_for(INVOICE) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[document_types]]\ncapability = 'invoices'\n", "entry 1: id must be"),
        (f"[[document_types]]\nid = '{INVOICE}'\n", "entry 1: capability must"),
        (f"[[document_types]]\nid = '{INVOICE}'\ncapability = 'x'\nprocesses = 'p'\n", "processes must be a list"),
        (f"[[document_types]]\nid = '{INVOICE}'\ncapability = 'x'\nstate = 'on'\n", "unknown key(s) state"),
        ("document_types = 3\n", "must be a list of tables"),
        ("[other]\n", "unknown key(s) other"),
        ("[[document_types]\n", "not valid TOML"),
    ],
)
def test_a_bad_map_names_the_file_and_the_entry(tmp_path, text, message):
    bad = tmp_path / "bad.toml"
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.toml") as caught:
        CapabilityMap.load(bad)
    assert message in str(caught.value)


def test_a_missing_map_names_the_setting(tmp_path):
    with pytest.raises(ConfigError, match=r"parity\.capability_map"):
        CapabilityMap.load(tmp_path / "nope.toml")


# ---- what to configure ---------------------------------------------------------------------


def test_the_profile_plus_what_the_party_received():
    profile = {"invoices": "on", "invoiceResponse": "off", "orders": "inherited"}
    before = snap(ServiceSeen(INVOICE), ServiceSeen(IMR), ServiceSeen(ORDER, (ORDERING,)), ServiceSeen(DESPATCH))
    plan = parity.plan_capabilities(profile, before, SHIPPED)
    assert plan.capabilities == {"invoices": "on", "invoiceResponse": "on", "orders": "on"}
    assert plan.added == {"invoiceResponse": [IMR], "orders": [ORDER]}
    assert plan.uncovered == [DESPATCH]
    assert plan.baseline and plan.detail()["uncovered"] == [DESPATCH]


@pytest.mark.parametrize("before", [None, snap(ServiceSeen(ORDER), lookup=NOT_REGISTERED)])
def test_without_a_usable_snapshot_the_profile_alone(before):
    plan = parity.plan_capabilities({"invoices": "on"}, before, SHIPPED)
    assert plan.capabilities == {"invoices": "on"} and plan.added == {} and plan.uncovered == []
    assert not plan.baseline


# ---- the business card ---------------------------------------------------------------------

CARD = BusinessCardSeen(name="Old BV", country_code="BE", geo_info="Gent", email="a@old.example", website="https://w")


def test_the_card_is_carried_unless_the_row_or_the_profile_sets_a_field():
    ops = BusinessCardSpec(email="ops@example.com")
    plan = parity.plan_business_card(party_id="0106:1", row_name=None, profile_card=ops, snapshot=snap(card=CARD))
    assert plan is not None
    assert plan.body == {"names": "Old BV", "countryCode": "BE", "geoInfo": "Gent", "email": "ops@example.com"}
    assert plan.carried == {"names": "Old BV", "countryCode": "BE", "geoInfo": "Gent"}
    assert plan.overridden == {"email": "profile"}
    assert plan.not_carried == {"website": "https://w"}


def test_the_row_name_wins_and_a_card_without_snapshot_is_the_profiles():
    with_row = parity.plan_business_card(
        party_id="0106:1", row_name="Row BV", profile_card=None, snapshot=snap(card=CARD)
    )
    assert with_row is not None and with_row.body["names"] == "Row BV" and with_row.overridden == {"names": "batch row"}
    profile_only = parity.plan_business_card(
        party_id="0106:1", row_name=None, profile_card=BusinessCardSpec(country_code="NL"), snapshot=None
    )
    assert profile_only is not None and profile_only.body == {"names": "0106:1", "countryCode": "NL"}
    assert profile_only.carried == {}
    assert parity.plan_business_card(party_id="0106:1", row_name="X", profile_card=None, snapshot=snap()) is None


# ---- the verdict ---------------------------------------------------------------------------


@pytest.mark.parametrize(("policy", "action"), [("require", "hold"), ("warn", "warn"), ("off", "pass")])
def test_a_gap_under_each_policy(policy, action):
    verdict = parity.judge(policy, [INVOICE, DESPATCH, MLR], [f"busdox-docid-qns::{INVOICE}"], baseline=True)
    assert verdict.missing == [DESPATCH, MLR]
    assert verdict.action == action
    assert verdict.message("eConnect's").endswith(f"2 document type(s) the party received before: {DESPATCH}; {MLR}")


def test_no_gap_passes_under_require():
    verdict = parity.judge("require", [INVOICE], [INVOICE, CREDIT_NOTE], baseline=True)
    assert verdict.action == "pass" and verdict.detail()["missing"] == []


# ---- the capabilities step with a snapshot -------------------------------------------------


def test_the_capabilities_step_puts_the_received_capabilities_and_reports_the_uncovered():
    script = ScriptedPsb(
        {
            ("PUT", "/peppol/config/party/"): httpx.Response(200, json={}),
            ("GET", "/hook"): httpx.Response(200, json=[]),
            ("PUT", "/hook"): httpx.Response(200, json={}),
        }
    )
    ctx = ctx_for(script, settings=Settings())
    before = snap(ServiceSeen(INVOICE), ServiceSeen(MLR), ServiceSeen(DESPATCH))
    outcome = run(replace(ctx, snapshot=before), record(Direction.TO_ECONNECT, State.TAKEN_OVER))
    assert isinstance(outcome, Advance)
    [put] = [r for r in script.requests if r.method == "PUT" and "/peppol/config/party/" in str(r.url)]
    assert json.loads(put.content)["capabilities"]["reviews"] == {"state": "on"}
    assert outcome.detail["parity"] == {"baseline": True, "added": {"reviews": [MLR]}, "uncovered": [DESPATCH]}
