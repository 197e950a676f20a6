"""Network verification: does the Peppol network itself agree that a takeover happened?

The PSB says what eConnect did; senders find a party through the SML (DNS) and its SMP.
With ``verify.peppol_network`` on, the steps ask this module as well
(``docs/peppol-network.md``, "Network verification"):

- inbound takeover: the SML points at eConnect's SMP (``verify.econnect_smp_host``);
- inbound verification (after ``permissions_set``): that SMP's ServiceGroup lists the
  profile's document types, and each has an endpoint;
- outbound takeover: the SML points at an SMP that is not eConnect's.

Each check returns a ``NetworkCheck`` whose ``observation`` the step puts in its outcome,
so every look at the network is an audit event. DNS and SMP trouble raises
``NetworkLookupError`` (transient). ``lookup`` is the same machinery for ``peppol-migrate lookup``.

Which SMP is eConnect's: ``verify.econnect_smp_host`` is a host (``smp.example.com``) or a
``host[:port]/path`` prefix of the SMP URL (a scheme, if written, is ignored). A host matches
any URL on that host; a port must be equal when given; a path matches whole segments
(``/smp/econnect`` matches ``/smp/econnect`` and ``/smp/econnect/x``, not ``/smp/econnect2``).
The sandbox serves every SMP on one loopback host, so there the path tells them apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from migration_engine.peppol.sml import SmlAnswer, SmlResolver
from migration_engine.peppol.smp import SmpClient
from migration_engine.settings import Settings

_UBL = "urn:oasis:names:specification:ubl:schema:xsd:"
_BIS3 = "urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0"
_ORDER = f"{_UBL}Order-2::Order##urn:fdc:peppol.eu:poacc:trns:order:3::2.1"

CORE_DOCUMENT_TYPES: dict[str, tuple[str, ...]] = {
    "invoices": (f"{_UBL}Invoice-2::Invoice##{_BIS3}::2.1", f"{_UBL}CreditNote-2::CreditNote##{_BIS3}::2.1"),
    "invoiceResponse": (
        f"{_UBL}ApplicationResponse-2::ApplicationResponse##urn:fdc:peppol.eu:poacc:trns:invoice_response:3::2.1",
    ),
    "orders": (_ORDER,),
    "orderOnly": (_ORDER,),
    "reviews": (f"{_UBL}ApplicationResponse-2::ApplicationResponse##urn:fdc:peppol.eu:poacc:trns:mlr:3::2.1",),
}
"""Per PSB capability, the Peppol BIS document types a sender must find when it is on.

The PSB groups document types in named capabilities and documents no list (``docs/psb-contract.md``, "Capabilities");
these are the BIS 3 ids the capabilities' own descriptions name (BIS Billing V3 invoice and
credit note, PEPPOL IMR, Order 3.0, MLR 3.0). A capability eConnect may add more types to;
one left ``inherited`` depends on eConnect's environment, so it is not required."""


def required_document_types(capabilities: Mapping[str, str]) -> list[str]:
    """The document types a profile's capabilities that are ``on`` must publish, in order."""
    wanted = (CORE_DOCUMENT_TYPES.get(name, ()) for name, state in capabilities.items() if state == "on")
    return list(dict.fromkeys(dt for group in wanted for dt in group))


def smp_matches(smp_url: str, expected: str) -> bool:
    """Whether ``smp_url`` is the SMP that ``expected`` (a host or host[:port]/path prefix) names."""
    expected = expected.strip()
    if not expected:
        return False
    url = urlsplit(smp_url if "://" in smp_url else f"http://{smp_url}")
    want = urlsplit(expected if "://" in expected else f"http://{expected}")
    host, want_host = (url.hostname or "").rstrip("."), (want.hostname or "").rstrip(".")
    if not want_host or host != want_host:
        return False
    if want.port is not None and url.port != want.port:
        return False
    prefix, path = want.path.rstrip("/"), url.path.rstrip("/")
    return not prefix or path == prefix or path.startswith(prefix + "/")


@dataclass(frozen=True)
class NetworkCheck:
    """A verdict and what was seen; ``reason`` says what is still missing when not ``ok``."""

    ok: bool
    observation: dict[str, Any] = field(default_factory=dict)
    reason: str = ""


class NetworkVerifier:
    """The SML resolver and the SMP client, with eConnect's SMP to compare against. Thread-safe."""

    def __init__(self, *, sml: SmlResolver, smp: SmpClient, econnect_smp: str) -> None:
        self.sml = sml
        self.smp = smp
        self.econnect_smp = econnect_smp.strip()

    @classmethod
    def from_settings(cls, settings: Settings) -> NetworkVerifier:
        v = settings.verify
        return cls(
            sml=SmlResolver(
                zone=v.sml_zone, server=v.dns_server, timeout_s=v.timeout_s, cname_fallback=v.cname_fallback
            ),
            smp=SmpClient(timeout_s=v.timeout_s),
            econnect_smp=v.econnect_smp_host,
        )

    def close(self) -> None:
        self.smp.close()

    def is_econnect(self, smp_url: str | None) -> bool:
        return smp_url is not None and smp_matches(smp_url, self.econnect_smp)

    def _sml(self, party_id: str) -> tuple[SmlAnswer, dict[str, Any]]:
        answer = self.sml.lookup(party_id)
        seen = {
            "name": answer.cname_name if answer.found_by == "cname" else answer.naptr_name,
            "status": answer.status,
            "smp_url": answer.smp_url,
            "econnect": self.is_econnect(answer.smp_url),
        }
        return answer, seen

    def inbound_takeover(self, party_id: str) -> NetworkCheck:
        """Done when the SML points at eConnect's SMP."""
        answer, seen = self._sml(party_id)
        if seen["econnect"]:
            return NetworkCheck(True, {"sml": seen})
        where = answer.smp_url or answer.status.replace("_", " ")
        return NetworkCheck(False, {"sml": seen}, f"the SML does not point at eConnect's SMP yet ({where})")

    def outbound_takeover(self, party_id: str) -> NetworkCheck:
        """Done when the SML points at an SMP that is not eConnect's."""
        answer, seen = self._sml(party_id)
        if answer.smp_url is not None and not seen["econnect"]:
            return NetworkCheck(True, {"sml": seen})
        where = answer.smp_url or answer.status.replace("_", " ")
        return NetworkCheck(False, {"sml": seen}, f"the SML does not point at the new provider's SMP yet ({where})")

    def _endpoints(self, smp_url: str, party_id: str, types: Sequence[str]) -> dict[str, list[str]]:
        """Per document type, the endpoint URLs its ServiceMetadata at ``smp_url`` gives ([] when none)."""
        found: dict[str, list[str]] = {}
        for dt in dict.fromkeys(types):
            metadata = self.smp.service_metadata(smp_url, party_id, dt)
            found[dt] = sorted({e.address for e in metadata.endpoints}) if metadata else []
        return found

    def inbound_published(self, party_id: str, required: Sequence[str], received: Sequence[str] = ()) -> NetworkCheck:
        """Done when the SML points at eConnect's SMP and its ServiceGroup lists every ``required``
        document type (at least one when none is required), each with an endpoint.

        ``received`` (receive parity: what the party's old SMP published) does not decide the
        verdict: once the required types are there, the observation's ``smp.received_missing``
        lists those of them eConnect's SMP does not publish with an endpoint."""
        answer, seen = self._sml(party_id)
        observation: dict[str, Any] = {"sml": seen}
        if not seen["econnect"] or answer.smp_url is None:
            where = answer.smp_url or answer.status.replace("_", " ")
            return NetworkCheck(False, observation, f"the SML does not point at eConnect's SMP ({where})")
        group = self.smp.service_group(answer.smp_url, party_id)
        if group is None:
            observation["smp"] = {"service_group": "not found"}
            return NetworkCheck(False, observation, "eConnect's SMP does not know the party")
        listed = group.document_types()
        missing = [dt for dt in required if dt not in listed]
        endpoints: dict[str, list[str]] = {}
        if not missing:
            endpoints = self._endpoints(answer.smp_url, party_id, [*required, *(r for r in received if r in listed)])
            missing = [dt for dt in required if not endpoints[dt]]
        observation["smp"] = {
            "document_types": len(listed),
            "missing": missing,
            "endpoints": sorted({u for urls in endpoints.values() for u in urls}),
        }
        if received and not missing:
            observation["smp"]["received_missing"] = [dt for dt in received if not endpoints.get(dt)]
        if missing:
            return NetworkCheck(False, observation, f"eConnect's SMP does not publish {len(missing)} document type(s)")
        if not listed:
            return NetworkCheck(False, observation, "eConnect's SMP lists no document type for the party")
        return NetworkCheck(True, observation)

    def outbound_published(self, party_id: str, received: Sequence[str]) -> NetworkCheck:
        """Receive parity after an outbound takeover: the SMP the SML points at now (the new
        provider's) publishes every ``received`` document type (what eConnect published), each
        with an endpoint. ``ok`` only when the SML points away from eConnect and nothing is
        missing; the observation's ``smp.missing`` lists the gap."""
        answer, seen = self._sml(party_id)
        observation: dict[str, Any] = {"sml": seen}
        if answer.smp_url is None or seen["econnect"]:
            where = answer.smp_url or answer.status.replace("_", " ")
            return NetworkCheck(False, observation, f"the SML does not point at the new provider's SMP ({where})")
        group = self.smp.service_group(answer.smp_url, party_id)
        listed = group.document_types() if group is not None else []
        endpoints = self._endpoints(answer.smp_url, party_id, [r for r in received if r in listed])
        missing = [dt for dt in received if not endpoints.get(dt)]
        observation["smp"] = {
            "service_group": "found" if group is not None else "not found",
            "document_types": len(listed),
            "missing": missing,
        }
        if missing:
            return NetworkCheck(False, observation, f"the new provider's SMP does not publish {len(missing)} type(s)")
        return NetworkCheck(True, observation)

    def econnect_lists(self, party_id: str, smp_url: str) -> NetworkCheck:
        """Outbound leftovers: ``ok`` when eConnect's SMP at ``smp_url`` no longer has the party's
        ServiceGroup (404)."""
        group = self.smp.service_group(smp_url, party_id)
        observation = {"econnect_smp": {"url": smp_url, "service_group": "found" if group is not None else "gone"}}
        if group is not None:
            return NetworkCheck(False, observation, "eConnect's SMP still lists the party")
        return NetworkCheck(True, observation)

    def lookup(self, party_id: str, *, metadata: bool = True) -> dict[str, Any]:
        """Everything a sender would find: both names, the SMP URL, document types and endpoints."""
        answer = self.sml.lookup(party_id)
        out: dict[str, Any] = {
            "party_id": party_id,
            "zone": self.sml.zone,
            **answer.as_dict(),
            "econnect": self.is_econnect(answer.smp_url) if self.econnect_smp else None,
            "service_group": None,
            "document_types": [],
        }
        if answer.smp_url is None:
            return out
        group = self.smp.service_group(answer.smp_url, party_id)
        out["service_group"] = "found" if group is not None else "not found"
        for ref in group.references if group is not None else ():
            entry: dict[str, Any] = {"scheme": ref.scheme, "document_type": ref.value, "endpoints": []}
            if metadata:
                found = self.smp.service_metadata(answer.smp_url, party_id, f"{ref.scheme}::{ref.value}")
                entry["endpoints"] = found.as_dict()["endpoints"] if found else []
            out["document_types"].append(entry)
        return out
