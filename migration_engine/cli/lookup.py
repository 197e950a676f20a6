"""``peppol-migrate lookup PARTY [--json] [--names-only]``: what senders find for a party.

The DNS names (NAPTR and legacy CNAME) in ``verify.sml_zone``, the SMP URL the SML gives,
and from that SMP the document types with the access point endpoint of each. ``--names-only``
computes the names without any network. Exit 0 when the SML knows the party, 1 when not
(or when DNS or the SMP fails), 2 for a malformed party id.

Any identifier the Peppol syntax allows is looked up: an unknown or removed ICD, or a value
failing its scheme's rule, is a warning (``warnings``, and on stderr), not a refusal, since
senders may still find such a party (import stays strict). ``provider`` names the SMP's
provider from ``network.known_smps`` (``eConnect`` for ``verify.econnect_smp_host``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from migration_engine.settings import Settings


def add_parser(sub: Any) -> None:
    """Register the ``lookup`` subcommand on the CLI's subparsers."""
    p = sub.add_parser("lookup", help="the SML (DNS) and SMP entries of a party, as senders find them")
    p.add_argument("party")
    p.add_argument("--names-only", action="store_true", help="only compute the DNS names; no network")
    p.add_argument("--zone", help="the SML zone (default verify.sml_zone), e.g. participant.sml.test.tech.peppol.org")
    p.add_argument("--no-metadata", action="store_true", help="list the document types without their endpoints")
    p.add_argument("--json", action="store_true")


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Imported here, not at the top: DNS and HTTP clients only when a lookup runs."""
    from migration_engine.peppol.identifiers import parse_lenient
    from migration_engine.peppol.sml import names
    from migration_engine.peppol.snapshots import parse_known_smps, provider_of
    from migration_engine.peppol.verification import NetworkVerifier
    from migration_engine.settings import with_overrides

    parsed, warnings = parse_lenient(args.party)
    party = parsed.canonical
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.zone:
        settings = with_overrides(settings, verify={"sml_zone": args.zone})
    zone = settings.verify.sml_zone
    if args.names_only:
        data: dict[str, Any] = {"party_id": party, "zone": zone.rstrip("."), **names(party, zone)}
        data["warnings"] = list(warnings)
        _print(data, args.json)
        return 0
    verifier = NetworkVerifier.from_settings(settings)
    try:
        data = verifier.lookup(party, metadata=not args.no_metadata)
    finally:
        verifier.close()
    data["warnings"] = list(warnings)
    data["provider"] = None
    if data["smp_url"]:
        known = parse_known_smps(settings.network.known_smps)
        econnect = settings.verify.econnect_smp_host
        data["provider"] = provider_of(data["smp_url"], econnect_smp=econnect, known_smps=known)[0]
    _print(data, args.json)
    return 0 if data["status"] == "found" else 1


def _print(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return
    print(f"party        {data['party_id']}")
    print(f"naptr name   {data['naptr_name']}")
    print(f"cname name   {data['cname_name']}")
    if "status" not in data:
        return
    if data["status"] != "found":
        print(f"smp          none: {data['status'].replace('_', ' ')} in {data['zone']}")
        return
    mark = {True: "  (eConnect's)", False: "  (not eConnect's)", None: ""}[data["econnect"]]
    print(f"smp          {data['smp_url']}  via {data['found_by']}{mark}")
    if data.get("provider") and not data["econnect"]:
        print(f"provider     {data['provider']}")
    if data["service_group"] != "found":
        print("service group  not found at that SMP")
        return
    print(f"document types ({len(data['document_types'])}):")
    for entry in data["document_types"]:
        print(f"  {entry['scheme']}::{entry['document_type']}")
        for endpoint in entry["endpoints"]:
            print(f"      {endpoint['url']}  {endpoint['transport_profile']}  process {endpoint['process']}")
