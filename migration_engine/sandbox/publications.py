"""What other providers publish for their parties: document types, business cards, and how
their SMP answers (``docs/sandbox.md``, "Other providers' SMPs and the Directory").

A ``Publication`` belongs to a party, not to a provider: it applies to whichever other
provider's SMP holds the party (the SML's owner). eConnect's SMP never reads it: it publishes
the document types of the capabilities the PSB configured (``econnect.EConnectData.offered``)
and the business card the PSB holds. The Directory stub lists a publication's card wherever
the party is, as the real Directory keeps a card until it is removed.

Pure data; ``SandboxModel`` keeps the publications under its lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from migration_engine.peppol.snapshot import BusinessCardSeen
from migration_engine.sandbox import catalog

SmpAnswer = Literal["ok", "missing", "garbage", "error"]
CardAt = Literal["smp", "directory", "both", "none"]
SMP_ANSWERS: tuple[str, ...] = ("ok", "missing", "garbage", "error")
CARD_PLACES: tuple[str, ...] = ("smp", "directory", "both", "none")
CARD_FIELDS = ("name", "country_code", "geo_info", "email", "website", "additional_info")


@dataclass(frozen=True)
class Publication:
    """What the SMP holding a party publishes, when it is another provider's.

    document_types: full document type ids (``catalog.document_type_ids`` turns capability
        and short names into them); None = the default, the BIS Billing 3 invoice alone.
    business_card: the card (``BusinessCardSeen``'s fields; its ``source`` is ignored), or None.
    card_at: where the card is published: the SMP's ``/businesscard``, the Directory, both or
        neither (``both``).
    smp_answer: how the SMP answers for the party: ``ok``; ``missing`` (404 though the SML
        points at it); ``garbage`` (HTTP 200 with an HTML page that is not XML); ``error``
        (HTTP 500 to every call, a technical failure).
    """

    document_types: tuple[str, ...] | None = None
    business_card: BusinessCardSeen | None = None
    card_at: CardAt = "both"
    smp_answer: SmpAnswer = "ok"

    def __post_init__(self) -> None:
        if self.smp_answer not in SMP_ANSWERS:
            raise ValueError(f"smp_answer is one of {', '.join(SMP_ANSWERS)}, not {self.smp_answer!r}")
        if self.card_at not in CARD_PLACES:
            raise ValueError(f"card_at is one of {', '.join(CARD_PLACES)}, not {self.card_at!r}")

    def types(self) -> list[catalog.DocumentType]:
        ids = self.document_types if self.document_types is not None else (catalog.BIS3_INVOICE.document_type_id,)
        return catalog.types_of(ids)

    def card_in_smp(self) -> BusinessCardSeen | None:
        return self.business_card if self.card_at in ("smp", "both") else None

    def card_in_directory(self) -> BusinessCardSeen | None:
        return self.business_card if self.card_at in ("directory", "both") else None

    def public(self) -> dict[str, Any]:
        card = self.business_card
        return {
            "documentTypes": None if self.document_types is None else list(self.document_types),
            "businessCard": None if card is None else {k: v for k, v in card.as_detail().items() if k != "source"},
            "cardAt": self.card_at,
            "smpAnswer": self.smp_answer,
        }


def card_from_json(value: object) -> BusinessCardSeen | None:
    """A card from JSON (``name``, ``countryCode``, ``geoInfo``, ``email``, ``website``,
    ``additionalInfo``, or the snake_case names); ``ValueError`` for anything else."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError("businessCard must be an object")
    aliases = {"countryCode": "country_code", "geoInfo": "geo_info", "additionalInfo": "additional_info"}
    fields: dict[str, str] = {}
    for key, item in value.items():
        name = aliases.get(key, key)
        if name not in CARD_FIELDS:
            raise ValueError(f"unknown business card field {key!r}; known: {', '.join(CARD_FIELDS)}")
        if item is not None:
            if not isinstance(item, str):
                raise ValueError(f"business card field {key!r} must be text")
            fields[name] = item
    return BusinessCardSeen(**fields) if fields else None


def from_json(body: dict[str, Any]) -> Publication | None:
    """A publication from ``documentTypes``/``businessCard``/``cardAt``/``smpAnswer`` of a
    request body; None when it names none of them. ``ValueError`` says what is wrong."""
    if not any(body.get(k) is not None for k in ("documentTypes", "businessCard", "cardAt", "smpAnswer")):
        return None
    types = body.get("documentTypes")
    if types is not None and (not isinstance(types, list) or not all(isinstance(t, str) for t in types)):
        raise ValueError("documentTypes must be a list of names or document type ids")
    return Publication(
        document_types=None if types is None else catalog.document_type_ids(types),
        business_card=card_from_json(body.get("businessCard")),
        card_at=body.get("cardAt") or "both",
        smp_answer=body.get("smpAnswer") or "ok",
    )
