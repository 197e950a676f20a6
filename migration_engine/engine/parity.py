"""Receive parity: what to configure so a party receives after a takeover what it received
before, and whether it does (``docs/peppol-network.md``, "Receive parity").

Pure decisions, no I/O: the steps hand in the party's snapshot (what its SMP published
before the move, ``peppol/snapshot.py``), the profile, the capability map
(``profiles.CapabilityMap``) and, for a verdict, what an SMP publishes now.

- ``plan_capabilities``: the profile's capabilities, plus every capability the map names for
  a document type the party received, turned ``on``; the received types no capability covers
  are listed (``uncovered``).
- ``plan_business_card``: the enrollment's business card: the batch row's ``name`` and the
  profile's fields win, every other field is carried from the snapshot's card.
- ``judge``: the document types received before that an SMP does not publish now (``missing``)
  and what the policy (``parity.inbound`` / ``parity.outbound``) does about them: ``pass``,
  ``warn`` or ``hold``.

Without a usable snapshot (none, or the lookup did not find the party's service group) there
is nothing to compare with: the profile alone is configured and every verdict passes, saying so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from migration_engine.peppol.snapshot import REGISTERED, PartySnapshot
from migration_engine.profiles import BusinessCardSpec, CapabilityMap, document_type_id

REQUIRE, WARN, OFF = "require", "warn", "off"
PASS, HOLD = "pass", "hold"


def usable(snapshot: PartySnapshot | None) -> bool:
    """Whether the snapshot found the party's service group (so it says what the party received)."""
    return snapshot is not None and snapshot.lookup == REGISTERED


def received(snapshot: PartySnapshot | None) -> list[str]:
    """The document types the party's SMP published at the snapshot (scheme stripped, in order)."""
    if snapshot is None or not usable(snapshot):
        return []
    return list(dict.fromkeys(document_type_id(dt) for dt in snapshot.document_types))


# ---- what to configure --------------------------------------------------------------------


@dataclass(frozen=True)
class CapabilityPlan:
    """The capabilities to PUT and how parity changed the profile's."""

    capabilities: dict[str, str]
    added: dict[str, list[str]] = field(default_factory=dict)  # capability turned on -> the types that need it
    uncovered: list[str] = field(default_factory=list)  # received types the map gives no capability
    baseline: bool = False  # whether a usable snapshot was there to plan from

    def detail(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "added": dict(self.added), "uncovered": list(self.uncovered)}


def plan_capabilities(
    profile_capabilities: Mapping[str, str], snapshot: PartySnapshot | None, capability_map: CapabilityMap
) -> CapabilityPlan:
    """The profile's capabilities plus, ``on``, those that publish what the party received.

    A capability the profile has ``off`` or ``inherited`` is turned ``on`` when the party
    received one of its types: continuity wins over the profile's choice (``added`` says so)."""
    capabilities = dict(profile_capabilities)
    added: dict[str, list[str]] = {}
    uncovered: list[str] = []
    services = snapshot.services if snapshot is not None and usable(snapshot) else ()
    for service in services:
        doc = document_type_id(service.document_type)
        caps = capability_map.capabilities_for(doc, service.processes)
        if not caps:
            if doc not in uncovered:
                uncovered.append(doc)
            continue
        for cap in caps:
            if capabilities.get(cap) != "on" or cap in added:
                capabilities[cap] = "on"
                types = added.setdefault(cap, [])
                if doc not in types:
                    types.append(doc)
    return CapabilityPlan(capabilities, added, uncovered, baseline=usable(snapshot))


# ---- the business card ----------------------------------------------------------------------

# The enrollment's businessCard fields (docs/psb-contract.md) and the snapshot field each carries.
CARD_FIELDS = (("names", "name"), ("countryCode", "country_code"), ("geoInfo", "geo_info"), ("email", "email"))
# Snapshot fields the PSB's business card has no documented place for.
NOT_CARRIED = ("website", "additional_info")


@dataclass(frozen=True)
class CardPlan:
    """The enrollment's ``businessCard`` and where each field came from."""

    body: dict[str, str]
    carried: dict[str, str] = field(default_factory=dict)  # body field -> value from the snapshot
    overridden: dict[str, str] = field(default_factory=dict)  # body field -> "batch row" or "profile"
    not_carried: dict[str, str] = field(default_factory=dict)  # snapshot field -> value the PSB has no field for

    def detail(self) -> dict[str, Any]:
        return {
            "fields": sorted(self.body),
            "carried": dict(self.carried),
            "overridden": dict(self.overridden),
            "not_carried": dict(self.not_carried),
        }


def plan_business_card(
    *, party_id: str, row_name: str | None, profile_card: BusinessCardSpec | None, snapshot: PartySnapshot | None
) -> CardPlan | None:
    """The business card to enroll, or None when neither the profile nor the snapshot has one.

    Per field: the batch row (``name``) or the profile when it sets the field; else the
    snapshot's card; ``names`` falls back to the party id, as before parity."""
    seen = snapshot.business_card if snapshot is not None else None
    if profile_card is None and seen is None:
        return None
    own: dict[str, str] = {"names": row_name or ""}
    if profile_card is not None:
        own.update(countryCode=profile_card.country_code, geoInfo=profile_card.geo_info, email=profile_card.email)
    body: dict[str, str] = {}
    carried: dict[str, str] = {}
    overridden: dict[str, str] = {}
    for body_field, seen_field in CARD_FIELDS:
        mine = own.get(body_field, "")
        theirs = (getattr(seen, seen_field) or "") if seen is not None else ""
        if mine:
            body[body_field] = mine
            if theirs and theirs != mine:
                overridden[body_field] = "batch row" if body_field == "names" else "profile"
        elif theirs:
            body[body_field] = carried[body_field] = theirs
    body.setdefault("names", party_id)
    not_carried = {f: str(getattr(seen, f)) for f in NOT_CARRIED if seen is not None and getattr(seen, f)}
    return CardPlan(body, carried, overridden, not_carried)


# ---- the verdict ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParityVerdict:
    """What an SMP publishes now against what the party received before, and the policy's answer."""

    policy: str
    received: list[str]
    missing: list[str]
    baseline: bool

    @property
    def action(self) -> str:
        if not self.missing or self.policy == OFF:
            return PASS
        return HOLD if self.policy == REQUIRE else WARN

    def detail(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "baseline": self.baseline,
            "received": len(self.received),
            "missing": list(self.missing),
            "verdict": self.action,
        }

    def message(self, whose: str) -> str:
        """``whose`` SMP does not publish ...: the exact missing list, for last_error and the event."""
        types = "; ".join(self.missing)
        return f"{whose} SMP does not publish {len(self.missing)} document type(s) the party received before: {types}"


def judge(policy: str, received_types: Iterable[str], published: Iterable[str], *, baseline: bool) -> ParityVerdict:
    """The received types ``published`` lacks (schemes ignored), under ``policy``."""
    now = {document_type_id(dt) for dt in published}
    wanted = list(dict.fromkeys(document_type_id(dt) for dt in received_types))
    return ParityVerdict(policy, wanted, [dt for dt in wanted if dt not in now], baseline)
