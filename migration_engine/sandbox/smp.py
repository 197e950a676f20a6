"""The SMPs of the sandbox over HTTP (Peppol SMP 1.x REST, ``docs/peppol-network.md``, "SMP").

- ``GET /smp/{smp id}/{iso6523-actorid-upis::ICD:id}``: the ServiceGroup, one
  ServiceMetadataReference per document type;
- ``GET /smp/{smp id}/{participant}/services/{busdox-docid-qns::doctype}``: the
  SignedServiceMetadata of one document type: its processes and the access point endpoint.

- ``GET /smp/{smp id}/businesscard/{participant}``: the party's business card (the Peppol
  Directory's v3 XML), 404 when the SMP publishes none.

Each SMP answers from its own data, not from DNS: eConnect's SMP (``econnect``) publishes
the document types of the party's capabilities that are on (the sandbox catalog) and the
business card the PSB holds (when its state is on) while the party is eConnect's; another
provider's SMP publishes the party's ``Publication`` (``publications.py``: document types,
card, and how it answers: ``missing`` 404s, ``garbage`` is an HTML page, ``error`` a 500) or
by default one generic invoice type (BIS Billing 3 invoice) while the party is theirs. So
after a Migrate the new SMP answers at once, and the old one 404s, while DNS may still lead
senders to the old one.

No XML signature: the sandbox's ``ds:Signature`` is left out. No token needed, no faults
besides a publication's ``smp_answer``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from migration_engine.peppol.snapshot import BusinessCardSeen
from migration_engine.sandbox import catalog
from migration_engine.sandbox.common import SandboxError, party_id
from migration_engine.sandbox.config import ECONNECT
from migration_engine.sandbox.model import SandboxModel
from migration_engine.sandbox.publications import Publication

SMP_NS = "http://busdox.org/serviceMetadata/publishing/1.0/"
IDS_NS = "http://busdox.org/transport/identifiers/1.0/"
WSA_NS = "http://www.w3.org/2005/08/addressing"
PARTICIPANT_SCHEME = "iso6523-actorid-upis"
DOCUMENT_SCHEME = "busdox-docid-qns"
PROCESS_SCHEME = "cenbii-procid-ubl"
TRANSPORT_PROFILE = "peppol-transport-as4-v2_0"

BC_NS = "http://www.peppol.eu/schema/pd/businesscard/20180621/"
GARBAGE = b"<html><head><title>Maintenance</title></head><body>Back soon<br></body></html>"

for _prefix, _uri in (("smp", SMP_NS), ("id", IDS_NS), ("wsa", WSA_NS)):
    ET.register_namespace(_prefix, _uri)


class SmpFault(Exception):
    """A publication's ``smp_answer`` other than ``ok``: how the SMP answers instead."""

    def __init__(self, answer: str) -> None:
        super().__init__(answer)
        self.answer = answer


def _publication(model: SandboxModel, smp_id: str, pid: str) -> Publication | None:
    """The publication of a party another provider's SMP holds (under the model's lock)."""
    if smp_id not in model.providers.ap_urls:
        raise SandboxError(404, f"the sandbox has no SMP {smp_id!r}")
    if model.sml.owner(pid) != smp_id:
        return None
    publication = model.publications.get(pid) or Publication()
    if publication.smp_answer != "ok":
        raise SmpFault(publication.smp_answer)
    return publication


def published(model: SandboxModel, smp_id: str, pid: str) -> tuple[list[catalog.DocumentType], str, str] | None:
    """What ``smp_id`` publishes for ``pid``: (document types, AP url, certificate), or None;
    ``SmpFault`` when a publication says the SMP answers otherwise."""
    with model.lock:
        model.apply_due_events()
        owner = model.sml.owner(pid)
        if smp_id == ECONNECT:
            if owner != ECONNECT or pid not in model.econnect.configs:
                return None
            config = model.config
            return model.econnect.offered(pid), config.access_point_url, config.access_point_certificate
        publication = _publication(model, smp_id, pid)
        if publication is None:
            return None
        return publication.types(), model.providers.ap_urls[smp_id], model.providers.certificate(smp_id)


def econnect_card(card: dict[str, object]) -> BusinessCardSeen | None:
    """eConnect's PSB business card (``{state, names: {value}, ...}``) as published, when on."""

    def value(key: str) -> str | None:
        item = card.get(key)
        found = item.get("value") if isinstance(item, dict) else None
        return found if isinstance(found, str) and found else None

    if card.get("state") != "on" or value("names") is None:
        return None
    return BusinessCardSeen(
        name=value("names"),
        country_code=value("countryCode"),
        geo_info=value("address"),
        email=value("emailAddress"),
        website=value("website"),
        additional_info=value("additionalInfo"),
    )


def card_published(model: SandboxModel, smp_id: str, pid: str) -> BusinessCardSeen | None:
    """The business card ``smp_id`` publishes for ``pid``, or None."""
    with model.lock:
        model.apply_due_events()
        if smp_id == ECONNECT:
            cfg = model.econnect.configs.get(pid)
            if model.sml.owner(pid) != ECONNECT or cfg is None:
                return None
            return econnect_card(cfg.business_card)
        publication = _publication(model, smp_id, pid)
        return None if publication is None else publication.card_in_smp()


def business_card_xml(pid: str, card: BusinessCardSeen) -> Response:
    """The Peppol Directory's v3 ``BusinessCard`` of one business entity."""
    root = ET.Element(f"{{{BC_NS}}}BusinessCard")
    _el(root, BC_NS, "ParticipantIdentifier", pid, scheme=PARTICIPANT_SCHEME)
    entity = _el(root, BC_NS, "BusinessEntity")
    _el(entity, BC_NS, "Name", card.name or "", language="en")
    _el(entity, BC_NS, "CountryCode", card.country_code or "NL")
    if card.geo_info:
        _el(entity, BC_NS, "GeographicalInformation", card.geo_info)
    if card.website:
        _el(entity, BC_NS, "WebsiteURI", card.website)
    if card.email:
        _el(entity, BC_NS, "Contact", type="primary", name=card.name or "", email=card.email)
    if card.additional_info:
        _el(entity, BC_NS, "AdditionalInformation", card.additional_info)
    return _xml(root)


def _el(parent: ET.Element, ns: str, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, f"{{{ns}}}{tag}", attrs)
    element.text = text
    return element


def _xml(root: ET.Element) -> Response:
    body = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return Response(body, media_type="text/xml; charset=UTF-8")


def service_group_xml(base_url: str, pid: str, types: list[catalog.DocumentType]) -> Response:
    root = ET.Element(f"{{{SMP_NS}}}ServiceGroup")
    _el(root, IDS_NS, "ParticipantIdentifier", pid, scheme=PARTICIPANT_SCHEME)
    refs = _el(root, SMP_NS, "ServiceMetadataReferenceCollection")
    participant = quote(f"{PARTICIPANT_SCHEME}::{pid}", safe="")
    for doc_id in dict.fromkeys(dt.document_type_id for dt in types):
        href = f"{base_url}/{participant}/services/{quote(f'{DOCUMENT_SCHEME}::{doc_id}', safe='')}"
        _el(refs, SMP_NS, "ServiceMetadataReference", href=href)
    return _xml(root)


def service_metadata_xml(
    pid: str, doc_id: str, types: list[catalog.DocumentType], ap_url: str, certificate: str
) -> Response:
    signed = ET.Element(f"{{{SMP_NS}}}SignedServiceMetadata")
    info = _el(_el(signed, SMP_NS, "ServiceMetadata"), SMP_NS, "ServiceInformation")
    _el(info, IDS_NS, "ParticipantIdentifier", pid, scheme=PARTICIPANT_SCHEME)
    _el(info, IDS_NS, "DocumentIdentifier", doc_id, scheme=DOCUMENT_SCHEME)
    processes = _el(info, SMP_NS, "ProcessList")
    for process_id in dict.fromkeys(dt.process_id for dt in types if dt.document_type_id == doc_id):
        process = _el(processes, SMP_NS, "Process")
        _el(process, IDS_NS, "ProcessIdentifier", process_id, scheme=PROCESS_SCHEME)
        endpoint = _el(
            _el(process, SMP_NS, "ServiceEndpointList"), SMP_NS, "Endpoint", transportProfile=TRANSPORT_PROFILE
        )
        _el(_el(endpoint, WSA_NS, "EndpointReference"), WSA_NS, "Address", ap_url)
        _el(endpoint, SMP_NS, "RequireBusinessLevelSignature", "false")
        _el(endpoint, SMP_NS, "Certificate", certificate)
        _el(endpoint, SMP_NS, "ServiceDescription", "Sandbox access point")
        _el(endpoint, SMP_NS, "TechnicalContactUrl", "https://example.invalid/contact")
    return _xml(signed)


def _not_found(message: str) -> Response:
    return Response(message, 404, media_type="text/plain; charset=UTF-8")


def _fault(fault: SmpFault, smp_id: str) -> Response:
    if fault.answer == "garbage":
        return Response(GARBAGE, 200, media_type="text/html; charset=UTF-8")
    if fault.answer == "error":
        return Response(f"SMP {smp_id}: internal server error", 500, media_type="text/plain; charset=UTF-8")
    return _not_found(f"SMP {smp_id} has no such service group")


def _participant(request: Request) -> str | None:
    """The canonical party id of the path's ``iso6523-actorid-upis::ICD:id``; None if malformed."""
    scheme, sep, value = request.path_params["participant"].partition("::")
    if not sep or scheme != PARTICIPANT_SCHEME:  # the scheme is case-sensitive (PFUOI POLICY 5)
        return None
    try:
        return party_id(value)
    except SandboxError:
        return None


async def service_group(request: Request) -> Response:
    smp_id, pid = request.path_params["smp_id"], _participant(request)
    try:
        found = published(_model(request), smp_id, pid) if pid else None
    except SandboxError as exc:
        return _not_found(exc.message)
    except SmpFault as fault:
        return _fault(fault, smp_id)
    if pid is None or found is None:
        return _not_found(f"SMP {smp_id} has no service group {request.path_params['participant']}")
    base = f"{str(request.base_url).rstrip('/')}/smp/{smp_id}"
    return service_group_xml(base, pid, found[0])


async def service_metadata(request: Request) -> Response:
    smp_id, pid = request.path_params["smp_id"], _participant(request)
    scheme, _, doc_id = request.path_params["doctype"].partition("::")
    try:
        found = published(_model(request), smp_id, pid) if pid else None
    except SandboxError as exc:
        return _not_found(exc.message)
    except SmpFault as fault:
        return _fault(fault, smp_id)
    if pid is None or found is None or scheme != DOCUMENT_SCHEME:
        return _not_found(f"SMP {smp_id} has no service metadata for {request.path_params['participant']}")
    types, ap_url, certificate = found
    if doc_id not in {dt.document_type_id for dt in types}:
        return _not_found(f"SMP {smp_id} publishes no document type {doc_id} for {pid}")
    return service_metadata_xml(pid, doc_id, types, ap_url, certificate)


async def business_card(request: Request) -> Response:
    smp_id, pid = request.path_params["smp_id"], _participant(request)
    try:
        card = card_published(_model(request), smp_id, pid) if pid else None
    except SandboxError as exc:
        return _not_found(exc.message)
    except SmpFault as fault:
        return _fault(fault, smp_id)
    if pid is None or card is None:
        return _not_found(f"SMP {smp_id} has no business card for {request.path_params['participant']}")
    return business_card_xml(pid, card)


def _model(request: Request) -> SandboxModel:
    model: SandboxModel = request.app.state.model
    return model


def routes() -> list[Route]:
    return [
        Route("/smp/{smp_id}/businesscard/{participant}", business_card, methods=["GET"]),
        Route("/smp/{smp_id}/{participant}/services/{doctype:path}", service_metadata, methods=["GET"]),
        Route("/smp/{smp_id}/{participant}", service_group, methods=["GET"]),
    ]
