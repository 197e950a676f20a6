"""The SMP client: a participant's ServiceGroup and ServiceMetadata (Peppol SMP 1.x REST).

This is the second module that speaks HTTP (httpx), to a second external API: SMPs, which
need no credentials. XML is parsed with defusedxml and any DTD is refused (an SMP answer
has none; a DTD is how entity-expansion and external-entity attacks arrive).

Facts as ``docs/peppol-network.md`` ("SMP") gives them:

- ``GET {smp}/{scheme}::{value}`` gives ``smp:ServiceGroup`` with one
  ``smp:ServiceMetadataReference/@href`` per document type (200 / 404);
- ``GET {smp}/{scheme}::{value}/services/{docScheme}::{docValue}`` gives
  ``smp:SignedServiceMetadata`` (processes, each with endpoints: transport profile and
  ``wsa:EndpointReference/wsa:Address``), or a ``smp:Redirect`` (one hop allowed);
- each path segment is percent-encoded on its own (``:`` and ``#`` too; ``/`` separates);
- SMPs should not answer with HTTP redirects: one is refused, not followed.

The ServiceMetadata URL is always built from the SMP base URL the SML gave and the document
type id, never from a ``href`` in an answer, so an answer cannot send us elsewhere (apart from
the one ``Redirect`` hop the spec allows). No signature is checked: this is a reachability
check, not a trust decision. 404 means "not there" (None); timeouts, other statuses and
unparseable XML raise ``NetworkLookupError``; an answer that arrived but cannot be read (not
well-formed, unsafe, the wrong document, too large) raises its subclass ``SmpAnswerError``, so
callers can tell "the SMP answers garbage" from "the SMP could not be reached".

``GET {smp}/businesscard/{participant}`` (phoss SMP's business card API, the Directory's v3
XML) is read by ``business_card``, which returns the raw bytes for ``peppol.businesscard``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import defusedxml
import defusedxml.ElementTree as SafeET
import httpx

from migration_engine import __version__
from migration_engine.errors import NetworkLookupError

PARTICIPANT_SCHEME = "iso6523-actorid-upis"
DOCUMENT_SCHEME = "busdox-docid-qns"
NS = {
    "smp": "http://busdox.org/serviceMetadata/publishing/1.0/",
    "ids": "http://busdox.org/transport/identifiers/1.0/",
    "wsa": "http://www.w3.org/2005/08/addressing",
}
MAX_BYTES = 2 * 1024 * 1024  # a ServiceGroup of thousands of document types stays far below


class SmpAnswerError(NetworkLookupError):
    """The SMP answered, but with something that is not the document asked for."""


def is_technical(exc: NetworkLookupError) -> bool:
    """Whether a failure is worth asking again (timeout, refused, DNS trouble, 429, 5xx),
    rather than an answer (garbage, 403, 410, ...) that another try would only repeat."""
    if isinstance(exc, SmpAnswerError):
        return False
    return exc.status is None or exc.status == 429 or exc.status >= 500


def participant_segment(party_id: str) -> str:
    """``iso6523-actorid-upis::0106:1`` percent-encoded as one path segment."""
    return quote(f"{PARTICIPANT_SCHEME}::{party_id}", safe="")


def document_segment(document_type: str) -> str:
    """A document type id (``scheme::value``, or a bare value in ``busdox-docid-qns``) as one segment."""
    scheme, value = split_document_type(document_type)
    return quote(f"{scheme}::{value}", safe="")


def _has_scheme(document_type: str) -> bool:
    """Whether the id starts with a scheme (``busdox-docid-qns::``): schemes hold no ``:``, values do."""
    head, sep, _ = document_type.partition("::")
    return bool(sep) and bool(head) and ":" not in head


def split_document_type(full: str) -> tuple[str, str]:
    """``(scheme, value)`` of ``scheme::value``; a value without a scheme gets ``busdox-docid-qns``."""
    if _has_scheme(full):
        scheme, _, value = full.partition("::")
        return scheme, value
    return DOCUMENT_SCHEME, full


@dataclass(frozen=True)
class DocumentRef:
    """One ServiceMetadataReference of a ServiceGroup."""

    scheme: str
    value: str
    href: str


@dataclass(frozen=True)
class ServiceGroup:
    participant: str
    references: tuple[DocumentRef, ...]

    def document_types(self) -> list[str]:
        return [r.value for r in self.references]


@dataclass(frozen=True)
class Endpoint:
    process_id: str
    transport_profile: str
    address: str


@dataclass(frozen=True)
class ServiceMetadata:
    document_type: str
    endpoints: tuple[Endpoint, ...]
    redirect: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "document_type": self.document_type,
            "endpoints": [
                {"process": e.process_id, "transport_profile": e.transport_profile, "url": e.address}
                for e in self.endpoints
            ],
            **({"redirect": self.redirect} if self.redirect else {}),
        }


def _parse(data: bytes, what: str) -> ET.Element:
    try:
        root: ET.Element = SafeET.fromstring(data, forbid_dtd=True)
    except defusedxml.DefusedXmlException as exc:
        raise SmpAnswerError(f"the SMP's {what} was refused as unsafe XML: {exc!r}", code="SMP") from None
    except ET.ParseError as exc:
        raise SmpAnswerError(f"the SMP's {what} is not well-formed XML: {exc}", code="SMP") from None
    return root


def _tag(name: str) -> str:
    prefix, _, local = name.partition(":")
    return f"{{{NS[prefix]}}}{local}"


def _text(element: ET.Element | None) -> str:
    return (element.text or "").strip() if element is not None else ""


def parse_service_group(data: bytes) -> ServiceGroup:
    """A ServiceGroup document; document types come from each reference's last path segment."""
    root = _parse(data, "ServiceGroup")
    if root.tag != _tag("smp:ServiceGroup"):
        raise SmpAnswerError(f"expected a ServiceGroup from the SMP, got <{root.tag[:200]}>", code="SMP")
    participant = _text(root.find("ids:ParticipantIdentifier", NS))
    refs = []
    for ref in root.iterfind("smp:ServiceMetadataReferenceCollection/smp:ServiceMetadataReference", NS):
        href = ref.get("href", "")
        _, sep, segment = urlsplit(href).path.rpartition("/services/")
        if not sep or not segment:
            continue  # not a reference we understand; the document type is unknown
        scheme, value = split_document_type(unquote(segment))
        refs.append(DocumentRef(scheme, value, href))
    return ServiceGroup(participant, tuple(refs))


def parse_service_metadata(data: bytes) -> ServiceMetadata:
    """A (Signed)ServiceMetadata document: its endpoints per process, or its Redirect."""
    root = _parse(data, "ServiceMetadata")
    if root.tag == _tag("smp:SignedServiceMetadata"):
        found = root.find("smp:ServiceMetadata", NS)
        if found is None:
            raise SmpAnswerError("the SMP's SignedServiceMetadata holds no ServiceMetadata", code="SMP")
        root = found
    if root.tag != _tag("smp:ServiceMetadata"):
        raise SmpAnswerError(f"expected ServiceMetadata from the SMP, got <{root.tag[:200]}>", code="SMP")
    redirect = root.find("smp:Redirect", NS)
    if redirect is not None:
        return ServiceMetadata("", (), redirect.get("href", ""))
    info = root.find("smp:ServiceInformation", NS)
    if info is None:
        raise SmpAnswerError("the SMP's ServiceMetadata has neither ServiceInformation nor Redirect", code="SMP")
    document_type = _text(info.find("ids:DocumentIdentifier", NS))
    endpoints = []
    for process in info.iterfind("smp:ProcessList/smp:Process", NS):
        process_id = _text(process.find("ids:ProcessIdentifier", NS))
        for endpoint in process.iterfind("smp:ServiceEndpointList/smp:Endpoint", NS):
            address = _text(endpoint.find("wsa:EndpointReference/wsa:Address", NS))
            endpoints.append(Endpoint(process_id, endpoint.get("transportProfile", ""), address))
    return ServiceMetadata(document_type, tuple(endpoints))


def bounded_get(
    http: httpx.Client, url: str, *, party_id: str, who: str, code: str, missing_ok: bool
) -> bytes | None:
    """GET ``url`` and read at most ``MAX_BYTES`` of its body (the SMP's and the Directory's
    answers alike); None on 404 when ``missing_ok``; ``NetworkLookupError`` for another status
    or a transport failure, ``SmpAnswerError`` for an answer too large. ``who`` names the
    server in messages ("SMP", "Directory")."""
    try:
        with http.stream("GET", url) as response:
            if missing_ok and response.status_code == 404:
                return None
            if response.status_code != 200:
                raise NetworkLookupError(
                    f"the {who} answered HTTP {response.status_code} to GET {url}",
                    code=code,
                    status=response.status_code,
                    party_id=party_id,
                )
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_BYTES:
                    raise SmpAnswerError(f"the {who}'s answer to GET {url} is too large", code=code)
            return bytes(body)
    except httpx.HTTPError as exc:
        raise NetworkLookupError(
            f"GET {url} failed: {type(exc).__name__}: {exc}", code=code, party_id=party_id
        ) from exc


class SmpClient:
    """Reads SMPs over a pooled httpx client; thread-safe. ``transport`` is for tests."""

    def __init__(
        self, *, timeout_s: float = 5.0, verify_tls: bool = True, transport: httpx.BaseTransport | None = None
    ):
        self._http = httpx.Client(
            timeout=timeout_s,
            verify=verify_tls,
            follow_redirects=False,
            transport=transport,
            headers={"Accept": "application/xml, text/xml", "User-Agent": f"peppol-migrate/{__version__}"},
        )

    def close(self) -> None:
        self._http.close()

    def _get(self, url: str, party_id: str) -> bytes | None:
        return bounded_get(self._http, url, party_id=party_id, who="SMP", code="SMP", missing_ok=True)

    def business_card(self, smp_url: str, party_id: str) -> bytes | None:
        """The raw business card (v3 XML) at ``{smp}/businesscard/{participant}``; None on 404."""
        return self._get(f"{smp_url.rstrip('/')}/businesscard/{participant_segment(party_id)}", party_id)

    def service_group(self, smp_url: str, party_id: str) -> ServiceGroup | None:
        """The participant's ServiceGroup at ``smp_url``; None when that SMP does not know it."""
        data = self._get(f"{smp_url.rstrip('/')}/{participant_segment(party_id)}", party_id)
        return None if data is None else parse_service_group(data)

    def service_metadata(self, smp_url: str, party_id: str, document_type: str) -> ServiceMetadata | None:
        """Endpoints for one document type (``scheme::value`` or a bare busdox-docid-qns value);
        follows one ``Redirect``; None when the SMP has no such metadata."""
        url = f"{smp_url.rstrip('/')}/{participant_segment(party_id)}/services/{document_segment(document_type)}"
        data = self._get(url, party_id)
        found = None if data is None else parse_service_metadata(data)
        if found is not None and found.redirect:
            target = urlsplit(found.redirect)
            if target.scheme not in ("http", "https"):
                raise SmpAnswerError(f"the SMP redirects to {found.redirect!r}", code="SMP", party_id=party_id)
            data = self._get(found.redirect, party_id)
            found = None if data is None else parse_service_metadata(data)
            if found is not None and found.redirect:
                raise SmpAnswerError("the SMP redirects more than once", code="SMP", party_id=party_id)
        return found
