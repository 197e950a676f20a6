"""``peppol-migrate lookup PARTY [--json] [--names-only]``: what senders find for a party.

The DNS names (NAPTR and legacy CNAME) in ``verify.sml_zone``, the SMP URL the SML gives,
and from that SMP the document types with the access point endpoint of each. ``--names-only``
computes the names without any network. Exit 0 when the SML knows the party, 1 when not
(or when DNS or the SMP fails), 2 for a malformed party id.
"""

from __future__ import annotations

import argparse
import json
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
    from migration_engine.peppol.identifiers import canonical
    from migration_engine.peppol.sml import names
    from migration_engine.peppol.verification import NetworkVerifier
    from migration_engine.settings import with_overrides

    party = canonical(args.party)
    if args.zone:
        settings = with_overrides(settings, verify={"sml_zone": args.zone})
    zone = settings.verify.sml_zone
    if args.names_only:
        data: dict[str, Any] = {"party_id": party, "zone": zone.rstrip("."), **names(party, zone)}
        _print(data, args.json)
        return 0
    verifier = NetworkVerifier.from_settings(settings)
    try:
        data = verifier.lookup(party, metadata=not args.no_metadata)
    finally:
        verifier.close()
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
    if data["service_group"] != "found":
        print("service group  not found at that SMP")
        return
    print(f"document types ({len(data['document_types'])}):")
    for entry in data["document_types"]:
        print(f"  {entry['scheme']}::{entry['document_type']}")
        for endpoint in entry["endpoints"]:
            print(f"      {endpoint['url']}  {endpoint['transport_profile']}  process {endpoint['process']}")
