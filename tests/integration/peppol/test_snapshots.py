"""Snapshots against the sandbox over loopback: each lookup answer, business cards from the SMP and
the Directory, retries, rate limits and the run's cache on the test's ManualClock."""

from __future__ import annotations

import dataclasses
import socket

import pytest

from migration_engine.peppol.sml import SmlResolver
from migration_engine.peppol.snapshot import (
    NOT_REGISTERED,
    REGISTERED,
    SMP_GARBAGE,
    SMP_MISSING,
    TECHNICAL_FAILURE,
    BusinessCardSeen,
)
from migration_engine.peppol.snapshots import NetworkLookups
from migration_engine.peppol.verification import CORE_DOCUMENT_TYPES
from migration_engine.sandbox import SandboxConfig, catalog
from migration_engine.sandbox.publications import Publication
from tests.support import engine_settings

CARD = BusinessCardSeen(name="Beta BV", country_code="NL", email="info@beta.example", website="https://beta.example")
MIX = catalog.document_type_ids(["invoices", "orders", "despatch-advice", "catalogue"])
AT_B, DIRECTORY_ONLY, MISSING, GARBAGE, BROKEN, AT_ECONNECT, NOWHERE = (
    f"0106:5000000{i}" for i in range(1, 8)
)


@pytest.fixture
def sandbox_config():
    return SandboxConfig(
        seed_parties=((AT_B, "provider-b"), (DIRECTORY_ONLY, "provider-b"), (MISSING, "provider-b"),
                      (GARBAGE, "provider-b"), (BROKEN, "provider-b"), (AT_ECONNECT, "econnect")),
        publications=(
            (AT_B, Publication(document_types=MIX, business_card=CARD, card_at="smp")),
            (DIRECTORY_ONLY, Publication(business_card=CARD, card_at="directory")),
            (MISSING, Publication(smp_answer="missing")),
            (GARBAGE, Publication(smp_answer="garbage")),
            (BROKEN, Publication(smp_answer="error")),
        ),
    )


def make_lookups(sandbox, clock, **limits) -> NetworkLookups:
    settings = engine_settings(
        "sqlite://",
        sandbox.url,
        PEPPOL_MIGRATE_VERIFY__DNS_SERVER=sandbox.dns_address,
        PEPPOL_MIGRATE_VERIFY__SML_ZONE=sandbox.model.config.sml_zone,
        PEPPOL_MIGRATE_VERIFY__ECONNECT_SMP_HOST=sandbox.smp_url("econnect"),
        PEPPOL_MIGRATE_VERIFY__TIMEOUT_S="2",
        PEPPOL_MIGRATE_NETWORK__KNOWN_SMPS=f"{sandbox.smp_url('provider-b')}=Provider B",
        PEPPOL_MIGRATE_NETWORK__DIRECTORY_URL=sandbox.directory_url,
    )
    settings = dataclasses.replace(settings, lookups=dataclasses.replace(settings.lookups, **limits))
    return NetworkLookups.from_settings(settings, clock=clock)


@pytest.fixture
def lookups(sandbox, clock):
    with make_lookups(sandbox, clock, dns_per_s=0, smp_per_s=0, directory_per_s=0) as found:
        yield found


def test_a_party_at_another_provider_is_registered_with_its_types_processes_and_card(lookups, sandbox, clock):
    snap = lookups.snapshot(AT_B)
    assert (snap.lookup, snap.provider, snap.econnect) == (REGISTERED, "Provider B", False)
    assert snap.smp_url == sandbox.smp_url("provider-b") and snap.smp_host == f"127.0.0.1:{sandbox.port}"
    assert snap.document_types == list(MIX)
    assert catalog.DESPATCH_ADVICE.document_type_id in snap.document_types
    order = next(s for s in snap.services if s.document_type == catalog.ORDER_ORDERING.document_type_id)
    assert set(order.processes) == {catalog.ORDER_ORDERING.process_id, catalog.ORDER_ONLY.process_id}
    assert all(s.transport_profiles == ("peppol-transport-as4-v2_0",) for s in snap.services)
    assert snap.business_card == dataclasses.replace(CARD, source="smp")
    assert snap.problems == () and snap.taken_at == clock.now()


def test_without_an_smp_card_the_directory_has_it(lookups):
    snap = lookups.snapshot(DIRECTORY_ONLY)
    assert snap.lookup == REGISTERED
    assert snap.document_types == [CORE_DOCUMENT_TYPES["invoices"][0]]
    assert snap.business_card == dataclasses.replace(CARD, source="directory")


def test_econnects_party_is_marked_and_lists_its_capabilities_types(lookups, sandbox):
    snap = lookups.snapshot(AT_ECONNECT)
    assert (snap.lookup, snap.provider, snap.econnect) == (REGISTERED, "eConnect", True)
    assert set(CORE_DOCUMENT_TYPES["invoices"]) <= set(snap.document_types)


def test_after_an_inbound_takeover_econnects_smp_publishes_the_configured_capabilities(lookups, sandbox):
    sandbox.model.register(AT_B, "econnect", {"invoices": "on", "orders": "on", "reviews": "off"})
    snap = lookups.snapshot(AT_B, fresh=True)
    assert snap.econnect
    wanted = {*CORE_DOCUMENT_TYPES["invoices"], *CORE_DOCUMENT_TYPES["orders"]}
    assert wanted <= set(snap.document_types)
    assert CORE_DOCUMENT_TYPES["reviews"][0] not in snap.document_types
    assert catalog.DESPATCH_ADVICE.document_type_id not in snap.document_types  # no capability covers it


@pytest.mark.parametrize(
    ("party", "answer", "problem"),
    [
        (NOWHERE, NOT_REGISTERED, None),
        (MISSING, SMP_MISSING, "not found (HTTP 404)"),
        (GARBAGE, SMP_GARBAGE, "not well-formed XML"),
        (BROKEN, TECHNICAL_FAILURE, "HTTP 500"),
    ],
)
def test_each_answer_is_told_apart(lookups, party, answer, problem):
    snap = lookups.snapshot(party)
    assert snap.lookup == answer
    assert snap.services == () and snap.business_card is None
    if problem is None:
        assert snap.problems == () and snap.smp_url is None
    else:
        assert any(problem in p for p in snap.problems), snap.problems


def test_a_technical_failure_is_retried_with_backoff_then_not_cached(sandbox, clock):
    with make_lookups(sandbox, clock, attempts=3, backoff_s=2.0, smp_per_s=0, dns_per_s=0) as lookups:
        start = clock.monotonic()
        assert lookups.snapshot(BROKEN).lookup == TECHNICAL_FAILURE
        assert clock.monotonic() - start == 2.0 + 4.0
        [smp] = lookups.stats()["smps"]
        assert (smp["calls"], smp["retries"]) == (3, 2)
        sandbox.model.publish(BROKEN, None)  # the SMP recovers
        assert lookups.snapshot(BROKEN).lookup == REGISTERED


def test_a_dns_server_that_never_answers_is_a_technical_failure(sandbox, clock):
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        with make_lookups(sandbox, clock, attempts=2, backoff_s=1.0) as lookups:
            lookups.sml = SmlResolver(
                zone=sandbox.model.config.sml_zone, server=f"127.0.0.1:{silent.getsockname()[1]}", timeout_s=0.1
            )
            snap = lookups.snapshot(AT_B)
    finally:
        silent.close()
    assert snap.lookup == TECHNICAL_FAILURE and snap.problems[0].startswith("SML: no answer from DNS")
    assert lookups.dns.stats()["retries"] == 1


def test_answers_are_cached_for_the_run_and_fresh_asks_again(sandbox, clock):
    with make_lookups(sandbox, clock, cache_s=60) as lookups:
        first = lookups.snapshot(AT_B)
        calls = lookups.dns.stats()["calls"]
        assert lookups.snapshot("NL:KVK:50000001") is first  # any notation, one cache entry
        assert lookups.dns.stats()["calls"] == calls
        assert lookups.snapshot(AT_B, fresh=True) is not first
        assert lookups.dns.stats()["calls"] == calls + 1
        clock.advance(61)
        lookups.snapshot(AT_B)
        assert lookups.dns.stats()["calls"] == calls + 2


def test_smp_calls_keep_to_the_rate(sandbox, clock):
    with make_lookups(sandbox, clock, smp_per_s=2, dns_per_s=0, directory_per_s=0) as lookups:
        start = clock.monotonic()
        snap = lookups.snapshot(AT_B)
        smp_calls = 1 + len(snap.services) + 1  # ServiceGroup, each ServiceMetadata, business card
        [smp] = lookups.stats()["smps"]
        assert smp["calls"] == smp_calls
        assert clock.monotonic() - start == pytest.approx((smp_calls - 1) / 2)


def test_many_snapshots_come_back_in_order(lookups):
    parties = [AT_B, NOWHERE, MISSING, AT_ECONNECT, GARBAGE]
    snaps = lookups.snapshots(parties, business_card=False, metadata=False)
    assert [s.party_id for s in snaps] == parties
    assert [s.lookup for s in snaps] == [REGISTERED, NOT_REGISTERED, SMP_MISSING, REGISTERED, SMP_GARBAGE]
    assert snaps[0].services[0].processes == ()  # metadata=False: types only


def test_a_lenient_id_is_looked_up_with_its_warning(lookups):
    snap = lookups.snapshot("9999:unknown-scheme")
    assert snap.lookup == NOT_REGISTERED
    assert any("unknown ICD 9999" in w for w in snap.extra["warnings"])


def test_the_snapshot_round_trips_through_its_audit_detail(lookups):
    from migration_engine.peppol.snapshot import PartySnapshot

    snap = lookups.snapshot(AT_B)
    assert PartySnapshot.from_detail(snap.as_detail()) == snap
