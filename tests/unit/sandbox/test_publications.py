"""What other providers publish in the sandbox: document type names, publications, and the parties
file's new columns (varied document types, business cards, SMP answers, parties registered nowhere)."""

from __future__ import annotations

import csv

import pytest

from migration_engine.errors import InputError
from migration_engine.keys import key_problem
from migration_engine.peppol.snapshot import BusinessCardSeen
from migration_engine.sandbox import SandboxConfig, SandboxModel, catalog
from migration_engine.sandbox.parties_file import read_parties, register_parties, write_batch
from migration_engine.sandbox.publications import Publication, card_from_json, from_json

FULL_ID = "busdox-docid-qns::urn:example:custom::Thing##urn:example:1::1.0"


def test_names_become_document_type_ids():
    ids = catalog.document_type_ids(["orders", "despatch-advice", "invoice", FULL_ID, "invoice"])
    assert ids == (
        catalog.ORDER_ORDERING.document_type_id,
        catalog.ORDER_RESPONSE.document_type_id,
        catalog.DESPATCH_ADVICE.document_type_id,
        catalog.BIS3_INVOICE.document_type_id,
        "urn:example:custom::Thing##urn:example:1::1.0",
    )
    with pytest.raises(ValueError, match=r"unknown document type.*faxes"):
        catalog.document_type_ids(["faxes"])


def test_an_unknown_id_gets_the_generic_process_and_a_known_one_all_its_processes():
    [custom] = catalog.types_of(["urn:example:x::1"])
    assert custom.process_id == catalog.GENERIC_PROCESS
    order = catalog.types_of([catalog.ORDER_ONLY.document_type_id])
    assert {t.process_id for t in order} == {catalog.ORDER_ORDERING.process_id, catalog.ORDER_ONLY.process_id}


def test_a_publication_checks_its_answers_and_defaults_to_the_bis3_invoice():
    assert [t.document_type_id for t in Publication().types()] == [catalog.BIS3_INVOICE.document_type_id]
    with pytest.raises(ValueError, match="smp_answer"):
        Publication(smp_answer="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="card_at"):
        Publication(card_at="fax")  # type: ignore[arg-type]
    card = BusinessCardSeen(name="A")
    assert Publication(business_card=card, card_at="smp").card_in_directory() is None
    assert Publication(business_card=card, card_at="directory").card_in_smp() is None


def test_publications_from_json():
    assert from_json({"partyId": "0106:1"}) is None
    found = from_json({"documentTypes": ["catalogue"], "businessCard": {"name": "A", "countryCode": "BE"}})
    assert found == Publication(
        document_types=(catalog.CATALOGUE.document_type_id,),
        business_card=BusinessCardSeen(name="A", country_code="BE"),
    )
    for bad in ({"documentTypes": "invoice"}, {"businessCard": {"colour": "red"}}, {"smpAnswer": "maybe"}):
        with pytest.raises(ValueError):
            from_json(bad)
    assert card_from_json({"name": None}) is None


def test_the_config_seeds_publications_and_shows_them():
    config = SandboxConfig(
        seed_parties=(("0106:50000001", "provider-b"),),
        publications=(("0106:50000001", Publication(smp_answer="missing")),),
    )
    model = SandboxModel(config)
    assert model.publication("NL:KVK:50000001").smp_answer == "missing"
    assert config.public()["publications"]["0106:50000001"]["smpAnswer"] == "missing"
    model.publish("0106:50000001", None)
    assert model.publication("0106:50000001") == Publication()


def test_the_parties_file_takes_document_types_cards_answers_and_parties_registered_nowhere(tmp_path):
    path = tmp_path / "parties.csv"
    path.write_text(
        "party_id,provider,document_types,card_name,card_country,card_email,card_at,smp_answer\n"
        "0106:50000001,provider-b,invoices despatch-advice,Beta BV,NL,info@beta.example,directory,\n"
        "0106:50000002,provider-c,,,,,,missing\n"
        "0106:50000003,none,,Ghost BV,NL,,directory,\n"
        "0106:50000004,econnect,invoices,Acme BV,NL,acme@example.com,,\n",
        encoding="utf-8",
    )
    parties = read_parties(path)
    model = SandboxModel()
    counts = register_parties(model, parties)
    assert counts == {"provider-b": 1, "provider-c": 1, "none": 1, "econnect": 1}
    beta = model.publication("0106:50000001")
    assert catalog.DESPATCH_ADVICE.document_type_id in (beta.document_types or ())
    assert beta.business_card == BusinessCardSeen(name="Beta BV", country_code="NL", email="info@beta.example")
    assert beta.card_at == "directory"
    assert model.publication("0106:50000002").smp_answer == "missing"
    assert model.owner("0106:50000003") is None and model.publication("0106:50000003").business_card is not None
    party = model.party("0106:50000004")
    assert party is not None
    card = party["businessCard"]
    assert card["state"] == "on" and card["names"]["value"] == "Acme BV"

    batch = tmp_path / "batch.csv"
    write_batch(model, parties, batch)
    rows = {r["party_id"]: r for r in csv.DictReader(batch.open())}
    ghost = rows["0106:50000003"]
    assert ghost["direction"] == "to-econnect" and key_problem(ghost["migration_key"]) is None


@pytest.mark.parametrize(
    ("row", "why"),
    [
        ("0106:50000001,econnect,,,,,,missing", "card_at and smp_answer apply to parties at other providers"),
        ("0106:50000001,provider-b,,,,,fax,", "card_at 'fax'"),
        ("0106:50000001,provider-b,,,,,,sometimes", "smp_answer 'sometimes'"),
    ],
)
def test_bad_publication_columns_are_named(tmp_path, row, why):
    path = tmp_path / "parties.csv"
    path.write_text(
        "party_id,provider,document_types,card_name,card_country,card_email,card_at,smp_answer\n" + row + "\n",
        encoding="utf-8",
    )
    with pytest.raises(InputError, match="line 2") as caught:
        read_parties(path)
    assert why in str(caught.value)
