"""The SMP client: percent-encoding, ServiceGroup/ServiceMetadata parsing, hostile XML refused,
HTTP answers mapped to None or NetworkLookupError (httpx.MockTransport, no network)."""

from __future__ import annotations

import httpx
import pytest

from migration_engine.errors import NetworkLookupError
from migration_engine.peppol.smp import (
    SmpClient,
    document_segment,
    parse_service_group,
    parse_service_metadata,
    participant_segment,
    split_document_type,
)

INVOICE = (
    "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2::Invoice##"
    "urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0::2.1"
)
SMP = "http://smp.example.com"
ENCODED = INVOICE.replace(":", "%3A").replace("#", "%23")
PROCESS = "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0"
SG = f"""<?xml version="1.0" encoding="UTF-8"?>
<smp:ServiceGroup xmlns:smp="http://busdox.org/serviceMetadata/publishing/1.0/"
                  xmlns:id="http://busdox.org/transport/identifiers/1.0/">
  <id:ParticipantIdentifier scheme="iso6523-actorid-upis">0106:12345678</id:ParticipantIdentifier>
  <smp:ServiceMetadataReferenceCollection>
    <smp:ServiceMetadataReference
      href="{SMP}/iso6523-actorid-upis%3A%3A0106%3A12345678/services/busdox-docid-qns%3A%3A{ENCODED}"/>
    <smp:ServiceMetadataReference href="{SMP}/something-else"/>
  </smp:ServiceMetadataReferenceCollection>
</smp:ServiceGroup>""".encode()
SSM = f"""<?xml version="1.0" encoding="UTF-8"?>
<smp:SignedServiceMetadata xmlns:smp="http://busdox.org/serviceMetadata/publishing/1.0/"
    xmlns:id="http://busdox.org/transport/identifiers/1.0/" xmlns:wsa="http://www.w3.org/2005/08/addressing">
  <smp:ServiceMetadata>
    <smp:ServiceInformation>
      <id:ParticipantIdentifier scheme="iso6523-actorid-upis">0106:12345678</id:ParticipantIdentifier>
      <id:DocumentIdentifier scheme="busdox-docid-qns">{INVOICE}</id:DocumentIdentifier>
      <smp:ProcessList><smp:Process>
        <id:ProcessIdentifier scheme="cenbii-procid-ubl">{PROCESS}</id:ProcessIdentifier>
        <smp:ServiceEndpointList>
          <smp:Endpoint transportProfile="peppol-transport-as4-v2_0">
            <wsa:EndpointReference><wsa:Address>https://ap.example.com/as4</wsa:Address></wsa:EndpointReference>
            <smp:RequireBusinessLevelSignature>false</smp:RequireBusinessLevelSignature>
            <smp:Certificate>MIIF</smp:Certificate>
            <smp:ServiceDescription>AP</smp:ServiceDescription>
            <smp:TechnicalContactUrl>https://example.com</smp:TechnicalContactUrl>
          </smp:Endpoint>
        </smp:ServiceEndpointList>
      </smp:Process></smp:ProcessList>
    </smp:ServiceInformation>
  </smp:ServiceMetadata>
  <ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"/>
</smp:SignedServiceMetadata>""".encode()


def redirect_to(href: str) -> bytes:
    return f"""<smp:SignedServiceMetadata xmlns:smp="http://busdox.org/serviceMetadata/publishing/1.0/">
  <smp:ServiceMetadata><smp:Redirect href="{href}"><smp:CertificateUID>x</smp:CertificateUID></smp:Redirect>
  </smp:ServiceMetadata></smp:SignedServiceMetadata>""".encode()


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<smp:ServiceGroup xmlns:smp="http://busdox.org/serviceMetadata/publishing/1.0/">&lol3;</smp:ServiceGroup>"""
XXE = b"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>
<smp:ServiceGroup xmlns:smp="http://busdox.org/serviceMetadata/publishing/1.0/">&e;</smp:ServiceGroup>"""
EXTERNAL_DTD = b"""<?xml version="1.0"?><!DOCTYPE x SYSTEM "http://attacker.example/x.dtd">
<smp:ServiceGroup xmlns:smp="http://busdox.org/serviceMetadata/publishing/1.0/"/>"""


def test_path_segments_are_percent_encoded_each_on_its_own():
    assert participant_segment("0106:12345678") == "iso6523-actorid-upis%3A%3A0106%3A12345678"
    encoded = document_segment(INVOICE)
    assert encoded.startswith("busdox-docid-qns%3A%3Aurn%3Aoasis%3A")
    assert "%23%23" in encoded and "/" not in encoded and "#" not in encoded
    assert document_segment(f"peppol-doctype-wildcard::{INVOICE}").startswith("peppol-doctype-wildcard%3A%3A")


def test_document_type_schemes_are_split_off_only_when_present():
    assert split_document_type(f"busdox-docid-qns::{INVOICE}") == ("busdox-docid-qns", INVOICE)
    assert split_document_type(INVOICE) == ("busdox-docid-qns", INVOICE)


def test_a_service_group_lists_its_document_types():
    group = parse_service_group(SG)
    assert group.participant == "0106:12345678"
    assert group.document_types() == [INVOICE]
    assert group.references[0].scheme == "busdox-docid-qns"


def test_service_metadata_gives_each_process_endpoint():
    metadata = parse_service_metadata(SSM)
    assert metadata.document_type == INVOICE
    [endpoint] = metadata.endpoints
    assert endpoint.address == "https://ap.example.com/as4"
    assert endpoint.transport_profile == "peppol-transport-as4-v2_0"
    assert endpoint.process_id == "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0"
    assert metadata.as_dict()["endpoints"][0]["url"] == "https://ap.example.com/as4"


@pytest.mark.parametrize("hostile", [BILLION_LAUGHS, XXE, EXTERNAL_DTD])
def test_hostile_xml_is_refused_by_defusedxml(hostile):
    with pytest.raises(NetworkLookupError, match="unsafe XML"):
        parse_service_group(hostile)
    with pytest.raises(NetworkLookupError, match="unsafe XML"):
        parse_service_metadata(hostile)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"<not-closed", "well-formed"),
        (b"<html/>", "expected a ServiceGroup"),
    ],
)
def test_other_bad_answers_say_what_is_wrong(data, why):
    with pytest.raises(NetworkLookupError, match=why):
        parse_service_group(data)


class Script:
    def __init__(self, answers):
        self.answers = answers
        self.paths: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        raw = request.url.raw_path.decode()
        self.paths.append(raw)
        for fragment, answer in self.answers.items():
            if fragment in request.url.host + raw:
                if isinstance(answer, Exception):
                    raise answer
                return answer
        return httpx.Response(404)


def client(script) -> SmpClient:
    return SmpClient(transport=httpx.MockTransport(script))


def test_the_client_reads_a_service_group_and_metadata_by_encoded_paths():
    script = Script({"/services/": httpx.Response(200, content=SSM), "/iso6523": httpx.Response(200, content=SG)})
    smp = client(script)
    group = smp.service_group(SMP + "/", "0106:12345678")
    assert group is not None and group.document_types() == [INVOICE]
    metadata = smp.service_metadata(SMP, "0106:12345678", INVOICE)
    assert metadata is not None and metadata.endpoints[0].address == "https://ap.example.com/as4"
    assert script.paths[0] == "/iso6523-actorid-upis%3A%3A0106%3A12345678"
    assert script.paths[1].startswith("/iso6523-actorid-upis%3A%3A0106%3A12345678/services/busdox-docid-qns%3A%3A")


def test_not_found_is_none_and_other_statuses_are_transient_errors():
    smp = client(Script({"/iso6523": httpx.Response(404)}))
    assert smp.service_group(SMP, "0106:12345678") is None
    for status in (500, 403, 301):
        smp = client(Script({"/iso6523": httpx.Response(status, headers={"Location": "http://elsewhere"})}))
        with pytest.raises(NetworkLookupError) as info:
            smp.service_group(SMP, "0106:12345678")
        assert info.value.status == status and info.value.code == "SMP"


def test_timeouts_and_dropped_connections_are_transient_errors():
    smp = client(Script({"/iso6523": httpx.ConnectTimeout("slow")}))
    with pytest.raises(NetworkLookupError, match="ConnectTimeout"):
        smp.service_group(SMP, "0106:12345678")


def test_one_redirect_is_followed_and_a_second_refused():
    other = "http://other-smp.example.com/iso6523-actorid-upis%3A%3A0106%3A12345678/services/x"
    script = Script({"smp.example.com/iso6523": httpx.Response(200, content=redirect_to(other))})
    script.answers = {"/services/x": httpx.Response(200, content=SSM), **script.answers}
    metadata = client(script).service_metadata(SMP, "0106:12345678", INVOICE)
    assert metadata is not None and metadata.endpoints

    loop = Script({"/services/": httpx.Response(200, content=redirect_to(other))})
    with pytest.raises(NetworkLookupError, match="more than once"):
        client(loop).service_metadata(SMP, "0106:12345678", INVOICE)
