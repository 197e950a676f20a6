"""Other providers' SMPs and the Directory stub over HTTP: varied document types, business cards
(SMP ``/businesscard`` and Directory search), and SMPs that answer 404, garbage or 500."""

from __future__ import annotations

import httpx
import pytest

from migration_engine.peppol.businesscard import parse_business_card_xml, parse_directory_json
from migration_engine.peppol.smp import SmpClient, parse_service_group
from migration_engine.peppol.snapshot import BusinessCardSeen
from migration_engine.sandbox import SandboxConfig, catalog
from migration_engine.sandbox.publications import Publication

PARTY, OTHER = "0106:50000001", "0106:50000002"
CARD = BusinessCardSeen(name="Beta BV", country_code="NL", email="info@beta.example")


@pytest.fixture
def sandbox_config():
    return SandboxConfig(seed_parties=((PARTY, "provider-b"), (OTHER, "provider-b")))


def participant(pid: str) -> str:
    return f"iso6523-actorid-upis%3A%3A{pid}"


def test_a_provider_smp_publishes_the_partys_types_and_card(sandbox):
    types = catalog.document_type_ids(["invoices", "catalogue", "despatch-advice"])
    sandbox.model.publish(PARTY, Publication(document_types=types, business_card=CARD, card_at="smp"))
    base = sandbox.smp_url("provider-b")
    with httpx.Client() as http:
        group = parse_service_group(http.get(f"{base}/{participant(PARTY)}").content)
        assert tuple(group.document_types()) == types
        card = http.get(f"{base}/businesscard/{participant(PARTY)}")
        assert card.status_code == 200
        assert parse_business_card_xml(card.content) == BusinessCardSeen(**{**CARD.as_detail(), "source": "smp"})
        assert http.get(f"{base}/businesscard/{participant(OTHER)}").status_code == 404  # no card
        query = {"participant": f"iso6523-actorid-upis::{PARTY}"}
        search = http.get(f"{sandbox.directory_url}/search/1.0/json", params=query)
        assert parse_directory_json(search.content, PARTY) is None  # card_at=smp: not in the Directory
    metadata = SmpClient().service_metadata(base, PARTY, catalog.CATALOGUE.document_type_id)
    assert metadata is not None and [e.process_id for e in metadata.endpoints] == [catalog.CATALOGUE.process_id]


def test_the_directory_lists_a_card_wherever_the_party_is(sandbox):
    ghost = "0106:50000009"
    resp = httpx.post(
        f"{sandbox.url}/sandbox/parties",
        json={"partyId": ghost, "owner": "none", "businessCard": {"name": "Ghost BV"}, "cardAt": "directory"},
    )
    assert resp.status_code == 201
    assert sandbox.model.owner(ghost) is None
    found = httpx.get(
        f"{sandbox.directory_url}/search/1.0/json", params={"participant": f"iso6523-actorid-upis::{ghost}"}
    ).json()
    assert found["total-result-count"] == 1
    assert found["matches"][0]["entities"][0]["name"] == [{"name": "Ghost BV", "language": "en"}]
    bad = httpx.get(f"{sandbox.directory_url}/search/1.0/json", params={"q": "ghost"})
    assert bad.status_code == 400


@pytest.mark.parametrize(
    ("answer", "status", "content_type"),
    [("missing", 404, "text/plain"), ("garbage", 200, "text/html"), ("error", 500, "text/plain")],
)
def test_an_smp_answers_as_its_publication_says(sandbox, answer, status, content_type):
    body = {"partyId": OTHER, "owner": "provider-b", "smpAnswer": answer}
    resp = httpx.post(f"{sandbox.url}/sandbox/parties", json=body)
    assert resp.status_code == 201
    base = sandbox.smp_url("provider-b")
    for path in (participant(OTHER), f"businesscard/{participant(OTHER)}"):
        got = httpx.get(f"{base}/{path}")
        assert got.status_code == status and got.headers["content-type"].startswith(content_type)
    assert httpx.get(f"{base}/{participant(PARTY)}").status_code == 200  # other parties unaffected


def test_econnects_smp_publishes_the_psb_card_once_it_is_on(sandbox):
    sandbox.model.register(PARTY, "econnect", {"invoices": "on"})
    url = f"{sandbox.smp_url('econnect')}/businesscard/{participant(PARTY)}"
    assert httpx.get(url).status_code == 404
    with sandbox.model.lock:
        sandbox.model.econnect.apply(PARTY, None, {"name": "Acme BV", "countryCode": "NL", "state": "on"})
    card = parse_business_card_xml(httpx.get(url).content)
    assert card is not None and (card.name, card.country_code) == ("Acme BV", "NL")
