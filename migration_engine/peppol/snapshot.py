"""What the Peppol network says a party receives, at one moment: the snapshot.

A snapshot is taken by the preflight (``plan``) and, when none exists yet, by the worker
before a migration's first mutating call. It is stored with the migration as a ``snapshot``
audit event (its ``as_detail()``), shown by ``show``, and is what receive parity compares
with after a takeover: the document types (and their processes and transport profiles) the
party's SMP published, its business card, which SMP and which provider served it.

``lookup`` tells three answers apart, because they call for different actions:

- ``registered``: the SML has a NAPTR record for the party and its SMP answered;
- ``not_registered``: the SML has no record (NXDOMAIN / no answer): nothing to migrate,
  the party needs a registration instead;
- ``smp_missing``: the SML has a record but the SMP answers 404 for the service group;
- ``smp_garbage``: the SML has a record but the SMP answers something that is not a
  ServiceGroup (unparseable XML, wrong root);
- ``technical_failure``: DNS or HTTP trouble (timeouts, 5xx, refused): ask again later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

REGISTERED = "registered"
NOT_REGISTERED = "not_registered"
SMP_MISSING = "smp_missing"
SMP_GARBAGE = "smp_garbage"
TECHNICAL_FAILURE = "technical_failure"
LOOKUP_ANSWERS = (REGISTERED, NOT_REGISTERED, SMP_MISSING, SMP_GARBAGE, TECHNICAL_FAILURE)


@dataclass(frozen=True)
class ServiceSeen:
    """One document type the party's SMP publishes, with its processes and each process's
    endpoints' transport profiles (e.g. ``peppol-transport-as4-v2_0``).

    ``document_type`` is the bare value for the ``busdox-docid-qns`` scheme (the form of
    ``verification.CORE_DOCUMENT_TYPES``), ``scheme::value`` for any other scheme (e.g.
    ``peppol-doctype-wildcard::...``)."""

    document_type: str
    processes: tuple[str, ...] = ()
    transport_profiles: tuple[str, ...] = ()

    def as_detail(self) -> dict[str, Any]:
        return {
            "document_type": self.document_type,
            "processes": list(self.processes),
            "transport_profiles": list(self.transport_profiles),
        }

    @classmethod
    def from_detail(cls, data: Mapping[str, Any]) -> ServiceSeen:
        return cls(
            document_type=str(data["document_type"]),
            processes=tuple(str(p) for p in data.get("processes", ())),
            transport_profiles=tuple(str(t) for t in data.get("transport_profiles", ())),
        )


@dataclass(frozen=True)
class BusinessCardSeen:
    """A party's business card as the SMP or the Peppol Directory published it (the
    Directory's v3 fields a PSB enrollment can carry). Every field is optional."""

    name: str | None = None
    country_code: str | None = None
    geo_info: str | None = None
    email: str | None = None
    website: str | None = None
    additional_info: str | None = None
    source: str | None = None  # "smp" or "directory"

    def as_detail(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_detail(cls, data: Mapping[str, Any]) -> BusinessCardSeen:
        known = {k: str(v) for k, v in data.items() if k in cls.__dataclass_fields__ and v is not None}
        return cls(**known)


@dataclass(frozen=True)
class PartySnapshot:
    """What the network said about ``party_id`` at ``taken_at``."""

    party_id: str
    taken_at: datetime
    lookup: str  # one of LOOKUP_ANSWERS
    smp_url: str | None = None
    smp_host: str | None = None
    provider: str | None = None  # the name the known-SMP list gives that host, if any
    services: tuple[ServiceSeen, ...] = ()
    business_card: BusinessCardSeen | None = None
    problems: tuple[str, ...] = ()  # what went wrong while looking (technical, partial answers)
    extra: Mapping[str, Any] = field(default_factory=dict)
    econnect: bool = False  # the SMP is eConnect's (verify.econnect_smp_host); provider is then "eConnect"

    @property
    def document_types(self) -> list[str]:
        return [s.document_type for s in self.services]

    def as_detail(self) -> dict[str, Any]:
        """The JSON-able detail of the ``snapshot`` audit event."""
        detail: dict[str, Any] = {
            "party_id": self.party_id,
            "taken_at": self.taken_at.isoformat(timespec="seconds"),
            "lookup": self.lookup,
            "smp_url": self.smp_url,
            "smp_host": self.smp_host,
            "provider": self.provider,
            "services": [s.as_detail() for s in self.services],
            "business_card": None if self.business_card is None else self.business_card.as_detail(),
            "problems": list(self.problems),
            "econnect": self.econnect,
        }
        if self.extra:
            detail["extra"] = dict(self.extra)
        return detail

    @classmethod
    def from_detail(cls, data: Mapping[str, Any]) -> PartySnapshot:
        card = data.get("business_card")
        return cls(
            party_id=str(data["party_id"]),
            taken_at=datetime.fromisoformat(str(data["taken_at"])),
            lookup=str(data["lookup"]),
            smp_url=data.get("smp_url"),
            smp_host=data.get("smp_host"),
            provider=data.get("provider"),
            services=tuple(ServiceSeen.from_detail(s) for s in data.get("services", ())),
            business_card=None if card is None else BusinessCardSeen.from_detail(card),
            problems=tuple(str(p) for p in data.get("problems", ())),
            extra=dict(data.get("extra", {})),
            econnect=bool(data.get("econnect", False)),
        )
