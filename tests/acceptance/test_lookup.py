"""`peppol-migrate lookup` as a user runs it: against the sandbox's DNS and SMPs, and offline."""

from __future__ import annotations

import pytest

from migration_engine.peppol.verification import CORE_DOCUMENT_TYPES
from migration_engine.sandbox import SandboxConfig, SandboxServer
from tests.support import ROOT
from tests.support.cli import as_json, peppol_migrate

PARTY = "0106:12345678"
OTHER = "0106:87654321"


@pytest.fixture(scope="module")
def sandbox():
    with SandboxServer(SandboxConfig()) as server:
        server.model.register(PARTY, "econnect", {"invoices": "on", "invoiceResponse": "on", "reviews": "off"})
        server.model.register(OTHER, "provider-b")
        yield server


@pytest.fixture(scope="module")
def env(sandbox):
    return {
        "PEPPOL_MIGRATE_VERIFY__DNS_SERVER": sandbox.dns_address,
        "PEPPOL_MIGRATE_VERIFY__SML_ZONE": sandbox.model.config.sml_zone,
        "PEPPOL_MIGRATE_VERIFY__ECONNECT_SMP_HOST": sandbox.smp_url("econnect"),
    }


def test_lookup_finds_econnects_smp_its_document_types_and_endpoints(sandbox, env):
    found = as_json(peppol_migrate("lookup", "NL:KVK:12345678", "--json", env=env, cwd=ROOT))
    assert found["party_id"] == PARTY
    assert found["naptr_name"].endswith(".iso6523-actorid-upis." + sandbox.model.config.sml_zone)
    assert found["cname_name"].startswith("B-")
    assert (found["status"], found["found_by"], found["smp_url"]) == ("found", "naptr", sandbox.smp_url("econnect"))
    assert found["econnect"] is True and found["service_group"] == "found"
    types = {entry["document_type"] for entry in found["document_types"]}
    assert {*CORE_DOCUMENT_TYPES["invoices"], *CORE_DOCUMENT_TYPES["invoiceResponse"]} <= types
    assert CORE_DOCUMENT_TYPES["reviews"][0] not in types
    for entry in found["document_types"]:
        assert [e["url"] for e in entry["endpoints"]] == [sandbox.model.config.access_point_url]


def test_lookup_prints_another_providers_smp_for_people(sandbox, env):
    result = peppol_migrate("lookup", OTHER, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert f"{sandbox.smp_url('provider-b')}  via naptr  (not eConnect's)" in result.stdout
    assert "document types (1):" in result.stdout
    assert "https://ap.provider-b.example/as4" in result.stdout


def test_lookup_of_an_unregistered_party_exits_1(env):
    result = peppol_migrate("lookup", "0106:11112222", env=env, cwd=ROOT)
    assert result.returncode == 1
    assert "not registered" in result.stdout


def test_names_only_needs_no_network_and_gives_the_published_vectors():
    offline = {"PEPPOL_MIGRATE_VERIFY__DNS_SERVER": "192.0.2.1:53"}  # TEST-NET: unreachable if asked
    result = peppol_migrate(
        "lookup",
        "9915:test",
        "--names-only",
        "--zone",
        "participant.sml.test.tech.peppol.org",
        "--json",
        env=offline,
        cwd=ROOT,
        timeout=30,
    )
    names = as_json(result)
    assert names["naptr_name"] == (
        "eh5boavaktmbgzyh2a63dz4qov33fvp5nsdvqklucfraayoodw6a.iso6523-actorid-upis.participant.sml.test.tech.peppol.org"
    )
    assert (
        names["cname_name"]
        == "B-85008b8279e07ab0392da75fa55856a2.iso6523-actorid-upis.participant.sml.test.tech.peppol.org"
    )
    # The zone follows psb.environment: the test SML for acceptance (the default), production's
    # SML for production (which needs its access point URL set; eConnect does not publish it).
    default_zone = peppol_migrate("lookup", "9915:test", "--names-only", env=offline, cwd=ROOT)
    assert default_zone.returncode == 0
    assert ".iso6523-actorid-upis.participant.sml.test.tech.peppol.org" in default_zone.stdout
    production = {
        **offline,
        "PEPPOL_MIGRATE_PSB__ENVIRONMENT": "production",
        "PEPPOL_MIGRATE_PSB__ACCESS_POINT_URL": "https://ap.example.eu/as4",
    }
    prod_zone = peppol_migrate("lookup", "9915:test", "--names-only", env=production, cwd=ROOT)
    assert prod_zone.returncode == 0
    assert (
        "eh5boavaktmbgzyh2a63dz4qov33fvp5nsdvqklucfraayoodw6a.iso6523-actorid-upis.participant.sml.prod.tech.peppol.org"
        in prod_zone.stdout
    )


def test_a_malformed_party_exits_2():
    result = peppol_migrate("lookup", "not-a-party", "--names-only", cwd=ROOT)
    assert result.returncode == 2 and "ICD:value" in result.stderr and "Traceback" not in result.stderr
