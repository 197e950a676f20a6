"""The sandbox serves the Peppol network: its SML zone as DNS (dnslib, loopback UDP) with the
propagation delay, and its SMPs over HTTP. Asked with the engine's own resolver and SMP client."""

from __future__ import annotations

import socket

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import httpx
import pytest

from migration_engine.errors import NetworkLookupError
from migration_engine.peppol.sml import SmlResolver, cname_name, naptr_name
from migration_engine.peppol.smp import SmpClient
from migration_engine.peppol.verification import CORE_DOCUMENT_TYPES, NetworkVerifier
from migration_engine.sandbox import SandboxConfig
from migration_engine.sandbox.dns import SandboxDns

PARTY = "0106:12345678"
INVOICE = CORE_DOCUMENT_TYPES["invoices"][0]


@pytest.fixture
def sandbox_config():
    return SandboxConfig(propagation_delay_s=5)


def resolver(sandbox, **kwargs) -> SmlResolver:
    return SmlResolver(zone=sandbox.model.config.sml_zone, server=sandbox.dns_address, timeout_s=2, **kwargs)


def verifier(sandbox) -> NetworkVerifier:
    econnect = sandbox.smp_url("econnect").split("://", 1)[1]
    return NetworkVerifier(sml=resolver(sandbox), smp=SmpClient(timeout_s=2), econnect_smp=econnect)


def test_naptr_follows_a_migration_only_after_the_propagation_delay(sandbox, clock):
    sml = resolver(sandbox)
    sandbox.model.register(PARTY, "provider-b")
    before = sml.lookup(PARTY)
    assert before.status == "found" and before.found_by == "naptr"
    assert before.smp_url == sandbox.smp_url("provider-b")

    key = sandbox.model.provider_prepare("provider-b", PARTY)
    sandbox.model.psb_put_config(PARTY, {"migration": {"key": key}})
    assert sandbox.model.owner(PARTY) == "econnect"
    clock.advance(4.9)
    assert sml.lookup(PARTY).smp_url == sandbox.smp_url("provider-b"), "DNS still shows the old SMP"
    clock.advance(0.2)
    assert sml.lookup(PARTY).smp_url == sandbox.smp_url("econnect")


def test_unknown_parties_are_nxdomain_and_other_zones_refused(sandbox):
    assert resolver(sandbox).lookup("0106:99999999").status == "not_registered"
    host, port = sandbox.dns_address.split(":")
    outside = dns.message.make_query(naptr_name(PARTY, "example.org"), dns.rdatatype.NAPTR)
    assert dns.query.udp(outside, host, port=int(port), timeout=2).rcode() == dns.rcode.REFUSED
    sandbox.model.register(PARTY, "econnect")
    other_type = dns.message.make_query(naptr_name(PARTY, sandbox.model.config.sml_zone), dns.rdatatype.A)
    answer = dns.query.udp(other_type, host, port=int(port), timeout=2)
    assert answer.rcode() == dns.rcode.NOERROR and not answer.answer


def test_the_legacy_cname_names_the_smp_and_is_the_fallback(sandbox):
    sandbox.model.register(PARTY, "provider-b")
    host, port = sandbox.dns_address.split(":")
    query = dns.message.make_query(cname_name(PARTY, sandbox.model.config.sml_zone), dns.rdatatype.CNAME)
    [rrset] = dns.query.udp(query, host, port=int(port), timeout=2).answer
    assert rrset[0].target.to_text() == "provider-b.smp.sandbox."

    # A zone without NAPTR records: only the fallback finds the SMP.
    naptr_less = SandboxDns(sandbox.model, sandbox.smp_url, naptr=False).start()
    try:
        zone = sandbox.model.config.sml_zone
        plain = SmlResolver(zone=zone, server=naptr_less.address, timeout_s=2)
        assert plain.lookup(PARTY).status == "not_registered"
        fallback = SmlResolver(zone=zone, server=naptr_less.address, timeout_s=2, cname_fallback=True)
        answer = fallback.lookup(PARTY)
        assert (answer.status, answer.found_by, answer.smp_url) == ("found", "cname", "http://provider-b.smp.sandbox")
    finally:
        naptr_less.stop()


def test_a_silent_dns_server_is_a_transient_lookup_error(sandbox):
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        sml = SmlResolver(zone="z.example", server=f"127.0.0.1:{silent.getsockname()[1]}", timeout_s=0.2)
        with pytest.raises(NetworkLookupError, match="no answer from DNS") as info:
            sml.lookup(PARTY)
        assert info.value.code == "DNS"
    finally:
        silent.close()


def test_econnects_smp_publishes_the_capabilities_that_are_on(sandbox):
    sandbox.model.register(PARTY, "econnect", {"invoices": "on", "invoiceResponse": "off", "reviews": "off"})
    found = verifier(sandbox).lookup(PARTY)
    assert found["econnect"] is True and found["service_group"] == "found"
    types = [entry["document_type"] for entry in found["document_types"]]
    assert set(CORE_DOCUMENT_TYPES["invoices"]) <= set(types)
    assert CORE_DOCUMENT_TYPES["invoiceResponse"][0] not in types
    urls = {e["url"] for entry in found["document_types"] for e in entry["endpoints"]}
    assert urls == {sandbox.model.config.access_point_url}

    check = verifier(sandbox).inbound_published(PARTY, [*CORE_DOCUMENT_TYPES["invoices"]])
    assert check.ok and check.observation["smp"]["endpoints"] == [sandbox.model.config.access_point_url]
    missing = verifier(sandbox).inbound_published(PARTY, [CORE_DOCUMENT_TYPES["invoiceResponse"][0]])
    assert not missing.ok and missing.observation["smp"]["missing"] == list(CORE_DOCUMENT_TYPES["invoiceResponse"])


def test_each_smp_answers_for_its_own_parties_only(sandbox):
    sandbox.model.register(PARTY, "provider-b")
    smp = SmpClient(timeout_s=2)
    assert smp.service_group(sandbox.smp_url("econnect"), PARTY) is None
    group = smp.service_group(sandbox.smp_url("provider-b"), PARTY)
    assert group is not None and group.document_types() == [INVOICE]
    metadata = smp.service_metadata(sandbox.smp_url("provider-b"), PARTY, INVOICE)
    assert metadata is not None
    [endpoint] = metadata.endpoints
    assert endpoint.address == "https://ap.provider-b.example/as4"
    assert smp.service_metadata(sandbox.smp_url("provider-b"), PARTY, CORE_DOCUMENT_TYPES["reviews"][0]) is None
    assert httpx.get(f"{sandbox.smp_url('nobody')}/iso6523-actorid-upis%3A%3A{PARTY}").status_code == 404
    answer = httpx.get(f"{sandbox.smp_url('provider-b')}/iso6523-actorid-upis%3A%3A{PARTY}")
    assert answer.headers["content-type"].startswith("text/xml")
    wrong_scheme = httpx.get(f"{sandbox.smp_url('provider-b')}/ISO6523-ACTORID-UPIS%3A%3A{PARTY}")
    assert wrong_scheme.status_code == 404
