"""Business cards from outside: the SMP's v3 XML and the Directory's JSON, and hostile input."""

from __future__ import annotations

import json
from xml.sax.saxutils import escape, quoteattr

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migration_engine.peppol.businesscard import (
    BusinessCardError,
    parse_business_card_xml,
    parse_directory_json,
)
from migration_engine.peppol.snapshot import BusinessCardSeen

NS = "http://www.peppol.eu/schema/pd/businesscard/20180621/"
PARTY = "0106:12345678"

CARD_XML = f"""<?xml version="1.0" encoding="UTF-8"?>
<BusinessCard xmlns="{NS}">
  <ParticipantIdentifier scheme="iso6523-actorid-upis">{PARTY}</ParticipantIdentifier>
  <BusinessEntity>
    <Name language="nl">Acme  BV</Name>
    <Name language="en">Acme Ltd</Name>
    <CountryCode>NL</CountryCode>
    <GeographicalInformation>Amsterdam</GeographicalInformation>
    <Identifier scheme="VAT">NL001</Identifier>
    <WebsiteURI>https://acme.example</WebsiteURI>
    <Contact type="sales" name="Jan" phonenumber="+31" email="sales@acme.example"/>
    <AdditionalInformation>Since 1900</AdditionalInformation>
    <RegistrationDate>2020-01-01</RegistrationDate>
  </BusinessEntity>
  <BusinessEntity><Name>Second</Name><CountryCode>BE</CountryCode></BusinessEntity>
</BusinessCard>""".encode()


def test_the_first_entity_of_an_smp_card_is_read_with_every_field():
    assert parse_business_card_xml(CARD_XML) == BusinessCardSeen(
        name="Acme BV / Acme Ltd",
        country_code="NL",
        geo_info="Amsterdam",
        email="sales@acme.example",
        website="https://acme.example",
        additional_info="Since 1900",
        source="smp",
    )


def test_an_older_namespace_is_read_the_same_way():
    old = CARD_XML.replace(NS.encode(), b"http://www.peppol.eu/schema/pd/businesscard/20160112/")
    card = parse_business_card_xml(old)
    assert card is not None and card.name == "Acme BV / Acme Ltd" and card.country_code == "NL"


def test_a_card_without_entities_is_none():
    empty = f'<BusinessCard xmlns="{NS}"><ParticipantIdentifier>{PARTY}</ParticipantIdentifier></BusinessCard>'
    assert parse_business_card_xml(empty.encode()) is None


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"<html><body>Back soon<br></body></html>", "not well-formed"),
        (b"<ServiceGroup xmlns='http://busdox.org/serviceMetadata/publishing/1.0/'/>", "expected a Peppol Directory"),
        (b'<BusinessCard xmlns="urn:other"><BusinessEntity/></BusinessCard>', "expected a Peppol Directory"),
        (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>', "unsafe XML"),
        (b"", "not well-formed"),
    ],
)
def test_garbage_is_a_business_card_error_saying_why(data, why):
    with pytest.raises(BusinessCardError, match=why):
        parse_business_card_xml(data)


def directory_answer(*matches: dict) -> bytes:
    return json.dumps({"version": "1.0", "total-result-count": len(matches), "matches": list(matches)}).encode()


MATCH = {
    "participantID": {"scheme": "iso6523-actorid-upis", "value": PARTY.upper()},
    "docTypes": [{"scheme": "busdox-docid-qns", "value": "x"}],
    "entities": [
        {
            "name": [{"name": "Acme BV", "language": "nl"}],
            "countryCode": "NL",
            "geoInfo": "Amsterdam",
            "websites": ["https://acme.example"],
            "contacts": [{"type": "x", "name": "Jan"}, {"type": "y", "email": "info@acme.example"}],
            "additionalInfo": "Since 1900",
        }
    ],
}


def test_the_directory_match_of_the_participant_is_its_card():
    other = dict(MATCH, participantID={"scheme": "iso6523-actorid-upis", "value": "0106:99999999"})
    card = parse_directory_json(directory_answer(other, MATCH), PARTY)
    assert card == BusinessCardSeen(
        name="Acme BV",
        country_code="NL",
        geo_info="Amsterdam",
        email="info@acme.example",
        website="https://acme.example",
        additional_info="Since 1900",
        source="directory",
    )


def test_no_match_or_no_entity_is_none():
    assert parse_directory_json(directory_answer(), PARTY) is None
    assert parse_directory_json(directory_answer(dict(MATCH, entities=[])), PARTY) is None
    other = dict(MATCH, participantID={"value": "0106:99999999"})
    assert parse_directory_json(directory_answer(other), PARTY) is None


@pytest.mark.parametrize("data", [b"<html/>", b"[1, 2]", b'{"matches": 3}', b"\xff\xfe"])
def test_an_answer_that_is_no_search_result_is_an_error(data):
    with pytest.raises(BusinessCardError):
        parse_directory_json(data, PARTY)


# -- properties: outside input never breaks the parsers ------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_as_xml_give_a_card_none_or_a_business_card_error(data):
    try:
        result = parse_business_card_xml(data)
    except BusinessCardError:
        return
    assert result is None or isinstance(result, BusinessCardSeen)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=30,
)
entity_keys = st.sampled_from(["name", "countryCode", "geoInfo", "websites", "contacts", "additionalInfo"])


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["participantID", "entities", "docTypes"]),
        st.one_of(
            json_values,
            st.just({"value": PARTY}),
            st.lists(st.dictionaries(entity_keys, json_values, max_size=6), max_size=2),
        ),
    )
)
def test_any_json_match_gives_a_card_none_or_a_business_card_error(match):
    try:
        result = parse_directory_json(json.dumps({"matches": [match]}), PARTY)
    except BusinessCardError:
        return
    assert result is None or isinstance(result, BusinessCardSeen)
    if result is not None:
        assert result.source == "directory"
        for value in (result.name, result.country_code, result.email, result.website):
            assert value is None or isinstance(value, str)


field_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Cn", "Co")), min_size=1, max_size=40
).filter(lambda t: t.strip())


@settings(max_examples=200, deadline=None)
@given(name=field_text, country=field_text, email=field_text, geo=field_text)
def test_a_card_written_as_xml_reads_back_with_its_whitespace_collapsed(name, country, email, geo):
    xml = (
        f'<BusinessCard xmlns="{NS}"><BusinessEntity><Name>{escape(name)}</Name>'
        f"<CountryCode>{escape(country)}</CountryCode>"
        f"<GeographicalInformation>{escape(geo)}</GeographicalInformation>"
        f"<Contact email={quoteattr(email)}/></BusinessEntity></BusinessCard>"
    )
    card = parse_business_card_xml(xml.encode("utf-8"))
    assert card is not None
    assert card.name == " ".join(name.split())
    assert card.country_code == " ".join(country.split())
    assert card.geo_info == " ".join(geo.split())
    assert card.email == " ".join(email.split())  # an attribute's tabs and newlines became spaces
