"""Business cards as the network publishes them: an SMP's v3 XML and the Peppol Directory's JSON.

Both are outside input, so both parsers accept anything and either return a
``BusinessCardSeen`` (or None when the document holds no business entity) or raise
``BusinessCardError`` saying what is wrong; nothing else escapes them.

- **SMP** ``GET {smp}/businesscard/{participant}``: ``<BusinessCard>`` in the Directory's
  namespace ``http://www.peppol.eu/schema/pd/businesscard/20180621/`` (v3; the older
  ``20160112`` and ``20161123`` namespaces have the same element names and are read the same
  way), with ``BusinessEntity`` elements holding ``Name`` (several, with ``language``, in v3),
  ``CountryCode``, ``GeographicalInformation``, ``WebsiteURI``, ``Contact`` (attributes
  ``type``, ``name``, ``phonenumber``, ``email``) and ``AdditionalInformation``. Parsed with
  defusedxml, DTDs refused, like the SMP client's documents.
- **Directory** ``GET /search/1.0/json?participant=iso6523-actorid-upis::ICD:VALUE``: an object
  with ``matches``, each with ``participantID`` and ``entities`` (``name`` as a list of
  ``{name, language}``, ``countryCode``, ``geoInfo``, ``websites``, ``contacts`` with
  ``email``, ``additionalInfo``).

A card with several business entities is read from the first (the one a PSB enrollment can
carry); several names of one entity are joined with ``" / "`` in document order.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

import defusedxml
import defusedxml.ElementTree as SafeET

from migration_engine.peppol.snapshot import BusinessCardSeen

NAMESPACES = (
    "http://www.peppol.eu/schema/pd/businesscard/20180621/",  # v3
    "http://www.peppol.eu/schema/pd/businesscard/20161123/",  # v2
    "http://www.peppol.eu/schema/pd/businesscard/20160112/",  # v1
)
MAX_FIELD = 1000  # characters kept of one field: a card is shown and carried, not archived


class BusinessCardError(ValueError):
    """A business card that cannot be read; the message says why."""


def _clip(text: str | None) -> str | None:
    if text is None:
        return None
    cleaned = " ".join(text.split())
    return cleaned[:MAX_FIELD] or None


def _card(
    names: list[str],
    country: Any,
    geo: Any,
    email: Any,
    website: Any,
    info: Any,
    source: str,
) -> BusinessCardSeen | None:
    fields = {
        "name": _clip(" / ".join(n for n in names if n)),
        "country_code": _clip(country) if isinstance(country, str) else None,
        "geo_info": _clip(geo) if isinstance(geo, str) else None,
        "email": _clip(email) if isinstance(email, str) else None,
        "website": _clip(website) if isinstance(website, str) else None,
        "additional_info": _clip(info) if isinstance(info, str) else None,
    }
    if not any(fields.values()):
        return None
    return BusinessCardSeen(**fields, source=source)


# -- the SMP's XML ------------------------------------------------------------------------------


def _local(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return "", tag


def _children(element: ET.Element, name: str, ns: str) -> list[ET.Element]:
    return [child for child in element if isinstance(child.tag, str) and child.tag == f"{{{ns}}}{name}"]


def _first_text(element: ET.Element, name: str, ns: str) -> str | None:
    found = _children(element, name, ns)
    return (found[0].text or "").strip() if found else None


def parse_business_card_xml(data: bytes) -> BusinessCardSeen | None:
    """The first business entity of an SMP's ``<BusinessCard>``; None when it lists none."""
    try:
        root: ET.Element = SafeET.fromstring(data, forbid_dtd=True)
    except defusedxml.DefusedXmlException as exc:
        raise BusinessCardError(f"the business card was refused as unsafe XML: {type(exc).__name__}") from None
    except (ET.ParseError, ValueError, TypeError) as exc:
        raise BusinessCardError(f"the business card is not well-formed XML: {exc}") from None
    ns, local = _local(root.tag) if isinstance(root.tag, str) else ("", "")
    if local != "BusinessCard" or ns not in NAMESPACES:
        raise BusinessCardError(f"expected a Peppol Directory BusinessCard, got <{str(root.tag)[:200]}>")
    entities = _children(root, "BusinessEntity", ns)
    if not entities:
        return None
    entity = entities[0]
    names = [(n.text or "").strip() for n in _children(entity, "Name", ns)]
    if not any(names):  # v1 wrote the name as an attribute of the entity
        names = [entity.get("name", "").strip()]
    emails = (c.get("email") or c.get("Email") for c in _children(entity, "Contact", ns))
    email = next((e for e in emails if e), None)
    websites = [(w.text or "").strip() for w in _children(entity, "WebsiteURI", ns)]
    return _card(
        names,
        _first_text(entity, "CountryCode", ns),
        _first_text(entity, "GeographicalInformation", ns),
        email,
        next((w for w in websites if w), None),
        _first_text(entity, "AdditionalInformation", ns),
        "smp",
    )


# -- the Directory's JSON -----------------------------------------------------------------------


def _same_participant(found: Any, party_id: str) -> bool:
    if not isinstance(found, dict):
        return False
    value = found.get("value")
    return isinstance(value, str) and value.strip().lower() == party_id.strip().lower()


def parse_directory_json(data: bytes | str, party_id: str) -> BusinessCardSeen | None:
    """The business card of ``party_id`` (``ICD:value``) in a Directory search answer; None
    when no match is that participant or its match has no entity."""
    try:
        doc = json.loads(data)
    except (ValueError, TypeError, RecursionError) as exc:
        raise BusinessCardError(f"the Directory's answer is not JSON: {str(exc)[:200]}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("matches", []), list):
        raise BusinessCardError("the Directory's answer is not a search result (no list of matches)")
    for match in doc.get("matches", []):
        if not isinstance(match, dict) or not _same_participant(match.get("participantID"), party_id):
            continue
        entities = match.get("entities")
        if not isinstance(entities, list) or not entities or not isinstance(entities[0], dict):
            return None
        entity: dict[str, Any] = entities[0]
        raw_names = entity.get("name")
        names: list[str] = []
        if isinstance(raw_names, list):
            names = [str(n.get("name", "")).strip() for n in raw_names if isinstance(n, dict)]
        elif isinstance(raw_names, str):
            names = [raw_names.strip()]
        contacts = entity.get("contacts")
        email = next(
            (c["email"] for c in contacts if isinstance(c, dict) and isinstance(c.get("email"), str) and c["email"]),
            None,
        ) if isinstance(contacts, list) else None
        websites = entity.get("websites")
        website = (
            next((w for w in websites if isinstance(w, str) and w.strip()), None)
            if isinstance(websites, list)
            else None
        )
        return _card(
            names,
            entity.get("countryCode"),
            entity.get("geoInfo"),
            email,
            website,
            entity.get("additionalInfo"),
            "directory",
        )
    return None
