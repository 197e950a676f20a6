"""Static Peppol facts the sandbox serves: document types per capability, capability states,
business-card fields, and which API calls change state."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DocumentType:
    """One Peppol document type with the process it is used in."""

    document_type_id: str
    process_id: str
    family: str


_UBL = "urn:oasis:names:specification:ubl:schema:xsd:"
_BILLING = "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0"
_BIS3 = "urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0"

BIS3_INVOICE = DocumentType(f"{_UBL}Invoice-2::Invoice##{_BIS3}::2.1", _BILLING, "Invoice")
BIS3_CREDIT_NOTE = DocumentType(f"{_UBL}CreditNote-2::CreditNote##{_BIS3}::2.1", _BILLING, "Invoice")
BIS3_CII = DocumentType(
    f"urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100::CrossIndustryInvoice##{_BIS3}::D16B",
    _BILLING,
    "Invoice",
)
NLCIUS_INVOICE = DocumentType(
    f"{_UBL}Invoice-2::Invoice##urn:cen.eu:en16931:2017#compliant#urn:fdc:nen.nl:nlcius:v1.0::2.1",
    _BILLING,
    "Invoice",
)
INVOICE_RESPONSE = DocumentType(
    f"{_UBL}ApplicationResponse-2::ApplicationResponse##urn:fdc:peppol.eu:poacc:trns:invoice_response:3::2.1",
    "urn:fdc:peppol.eu:poacc:bis:invoice_response:3",
    "InvoiceResponse",
)
ORDER_ORDERING = DocumentType(
    f"{_UBL}Order-2::Order##urn:fdc:peppol.eu:poacc:trns:order:3::2.1",
    "urn:fdc:peppol.eu:poacc:bis:ordering:3",
    "Order",
)
ORDER_RESPONSE = DocumentType(
    f"{_UBL}OrderResponse-2::OrderResponse##urn:fdc:peppol.eu:poacc:trns:order_response:3::2.1",
    "urn:fdc:peppol.eu:poacc:bis:ordering:3",
    "OrderResponse",
)
ORDER_ONLY = DocumentType(
    f"{_UBL}Order-2::Order##urn:fdc:peppol.eu:poacc:trns:order:3::2.1",
    "urn:fdc:peppol.eu:poacc:bis:order_only:3",
    "Order",
)
MLR = DocumentType(
    f"{_UBL}ApplicationResponse-2::ApplicationResponse##urn:fdc:peppol.eu:poacc:trns:mlr:3::2.1",
    "urn:fdc:peppol.eu:poacc:bis:mlr:3",
    "MessageLevelResponse",
)

# capability name -> (description as the PSB shows it, document types it publishes)
CAPABILITIES: dict[str, tuple[str, tuple[DocumentType, ...]]] = {
    "invoices": (
        "SI 2.0, BIS Billing V3, BIS Billing V3 CreditNote, BIS Billing V3 CII",
        (BIS3_INVOICE, BIS3_CREDIT_NOTE, BIS3_CII, NLCIUS_INVOICE),
    ),
    "invoiceResponse": ("PEPPOL IMR", (INVOICE_RESPONSE,)),
    "orders": ("PEPPOL Order transaction 3.0", (ORDER_ORDERING, ORDER_RESPONSE)),
    "orderOnly": ("PEPPOL Order only 3.0", (ORDER_ONLY,)),
    "reviews": ("PEPPOL MLR 3.0", (MLR,)),
}

ALL_DOCUMENT_TYPES: tuple[DocumentType, ...] = tuple(
    dict.fromkeys(dt for _, dts in CAPABILITIES.values() for dt in dts)
)
"""Every document type of eConnect's capabilities; other providers' APs accept all of them."""

# Document types other providers' SMPs may publish that no eConnect capability covers.
DESPATCH_ADVICE = DocumentType(
    f"{_UBL}DespatchAdvice-2::DespatchAdvice##urn:fdc:peppol.eu:poacc:trns:despatch_advice:3::2.1",
    "urn:fdc:peppol.eu:poacc:bis:despatch_advice:3",
    "DespatchAdvice",
)
CATALOGUE = DocumentType(
    f"{_UBL}Catalogue-2::Catalogue##urn:fdc:peppol.eu:poacc:trns:catalogue:3::2.1",
    "urn:fdc:peppol.eu:poacc:bis:catalogue_only:3",
    "Catalogue",
)
GENERIC_PROCESS = "urn:fdc:peppol.eu:poacc:bis:sandbox:generic"
"""The process of a document type id the sandbox does not know (given in full by a test)."""

# Short names of single document types, for the parties file and tests.
DOCUMENT_TYPES: dict[str, DocumentType] = {
    "invoice": BIS3_INVOICE,
    "credit-note": BIS3_CREDIT_NOTE,
    "cii": BIS3_CII,
    "nlcius": NLCIUS_INVOICE,
    "invoice-response": INVOICE_RESPONSE,
    "order": ORDER_ORDERING,
    "order-response": ORDER_RESPONSE,
    "order-only": ORDER_ONLY,
    "mlr": MLR,
    "despatch-advice": DESPATCH_ADVICE,
    "catalogue": CATALOGUE,
}
KNOWN_DOCUMENT_TYPES: tuple[DocumentType, ...] = tuple(dict.fromkeys((*ALL_DOCUMENT_TYPES, *DOCUMENT_TYPES.values())))


def document_type_ids(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Document type ids from capability names (their types), short names (``DOCUMENT_TYPES``)
    or full ids (anything with ``::``); ``ValueError`` names the unknown ones."""
    ids: list[str] = []
    unknown: list[str] = []
    for name in names:
        if name in CAPABILITIES:
            ids.extend(dt.document_type_id for dt in CAPABILITIES[name][1])
        elif name in DOCUMENT_TYPES:
            ids.append(DOCUMENT_TYPES[name].document_type_id)
        elif "::" in name and not any(c.isspace() for c in name):
            ids.append(name.removeprefix("busdox-docid-qns::"))
        else:
            unknown.append(name)
    if unknown:
        raise ValueError(
            f"unknown document type(s) {', '.join(unknown)}; known: a capability ({', '.join(CAPABILITIES)}), "
            f"a document type ({', '.join(DOCUMENT_TYPES)}) or a full document type id"
        )
    return tuple(dict.fromkeys(ids))


def types_of(ids: tuple[str, ...] | list[str]) -> list[DocumentType]:
    """The ``DocumentType``s (each with its processes) of document type ids; an id the sandbox
    does not know gets ``GENERIC_PROCESS``."""
    out: list[DocumentType] = []
    for doc_id in ids:
        known = [dt for dt in KNOWN_DOCUMENT_TYPES if dt.document_type_id == doc_id]
        out.extend(known or [DocumentType(doc_id, GENERIC_PROCESS, "Other")])
    return out


def normalise_state(name: str, value: object, inherited_on: bool) -> str:
    """A capability state as the PSB shows it (``on``, ``off``, ``inherited => on|off``).

    Accepts ``"on"``, ``"off"``, ``"inherited"``, ``"inherited => on|off"`` (the arrow part is
    recomputed from the environment), a bool, or an object with a ``state`` field.
    Raises ``ValueError`` with a readable message otherwise.
    """
    if name not in CAPABILITIES:
        raise ValueError(f"unknown capability {name!r}; known: {', '.join(CAPABILITIES)}")
    if isinstance(value, dict):
        value = value.get("state")
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("on", "off"):
            return text
        if text.startswith("inherited"):
            return "inherited => " + ("on" if inherited_on else "off")
    raise ValueError(f"capability {name!r}: state must be on, off or inherited, not {value!r}")


def is_on(state: str) -> bool:
    """Whether a (normalised) state resolves to on."""
    return state == "on" or state.endswith("=> on")


def capabilities_json(states: dict[str, str]) -> dict[str, dict[str, str]]:
    return {name: {"state": state, "description": CAPABILITIES[name][0]} for name, state in states.items()}


_CARD_ALIASES = {
    "names": ("names", "Business names."),
    "name": ("names", "Business names."),
    "geoInfo": ("address", "Geographic information."),
    "address": ("address", "Geographic information."),
    "email": ("emailAddress", "Technical contact"),
    "emailAddress": ("emailAddress", "Technical contact"),
    "countryCode": ("countryCode", "Country."),
}


def merge_business_card(card: dict[str, Any], update: object) -> dict[str, Any]:
    """``card`` with ``update`` merged in. Plain strings (enrollment style) become
    ``{state: on, value, description}``; objects (PeppolConfig style) are kept as given."""
    if not isinstance(update, dict):
        raise ValueError("businessCard must be an object")
    merged = dict(card)
    for key, value in update.items():
        if key in ("state", "isActive"):
            merged["state"] = value if isinstance(value, str) else ("on" if value else "off")
            continue
        target, description = _CARD_ALIASES.get(key, (key, key))
        if isinstance(value, list):  # psb-docs style: [{"name": "...", "language": "nl"}, ...]
            value = ", ".join(str(v.get("name", v)) if isinstance(v, dict) else str(v) for v in value)
        if isinstance(value, dict):
            merged[target] = value
        else:
            merged[target] = {"state": "on", "value": str(value), "description": description}
    merged.setdefault("state", "on")
    return merged


# Which API calls change state, and where the party id sits in the path.
_MUTATING = (
    ("PUT", re.compile(r"^/api/v1/peppol/config/party/(?P<party>[^/]+)$")),
    ("DELETE", re.compile(r"^/api/v1/peppol/config/party/(?P<party>[^/]+)$")),
    ("GET", re.compile(r"^/api/v1/peppol/(?P<party>[^/]+)/prepareToMigrate$")),
    ("PUT", re.compile(r"^/api/v1/(?P<party>[^/]+)/hook$")),
    ("DELETE", re.compile(r"^/api/v1/(?P<party>[^/]+)/hook/[^/]+$")),
    ("PUT", re.compile(r"^/api/v1/user/[^/]+/party$")),
    ("DELETE", re.compile(r"^/api/v1/user/[^/]+/party/(?P<party>[^/]+)$")),
    ("PUT", re.compile(r"^/api/v1-beta/(?P<party>[^/]+)/enroll$")),
)
_PARTY_IN_PATH = (
    re.compile(r"^/api/v1/peppol/config/party/(?P<party>[^/]+)$"),
    re.compile(r"^/api/v1/peppol/(?P<party>[^/]+)/prepareToMigrate$"),
    re.compile(r"^/api/v1/user/[^/]+/party/(?P<party>[^/]+)$"),
    re.compile(r"^/api/v1-beta/(?P<party>[^/]+)/enroll$"),
    re.compile(r"^/api/v1/(?!peppol/|user/|hook)(?P<party>[^/]+)/hook(?:/[^/]+)?$"),
)


def classify_call(method: str, path: str) -> tuple[str | None, bool]:
    """(the raw party id in the path or None, whether the call changes state)."""
    mutating = any(m == method and rx.match(path) for m, rx in _MUTATING)
    for rx in _PARTY_IN_PATH:
        found = rx.match(path)
        if found:
            return found.group("party"), mutating
    return None, mutating


def options(
    pid: str,
    types: list[DocumentType],
    url: str,
    certificate: str,
    wanted: set[str],
    family: str | None,
    preferred: str | None,
    limit: int | None,
) -> list[dict[str, str]]:
    """Delivery options (``GET /peppol/deliveryOption`` elements) of one party, filtered by
    document type ids and family, the preferred document type first."""
    chosen = [
        dt
        for dt in dict.fromkeys(types)
        if (not wanted or dt.document_type_id in wanted)
        and (not family or dt.family.lower() == family.lower())
    ][:limit]
    chosen.sort(key=lambda dt: dt.document_type_id != preferred)
    return [
        {
            "partyId": pid,
            "documentTypeId": dt.document_type_id,
            "processId": dt.process_id,
            "protocol": "As4",
            "url": url,
            "certificate": certificate,
        }
        for dt in chosen
    ]
