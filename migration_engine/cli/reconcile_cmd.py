"""``peppol-migrate reconcile [--batch NAME] [--json]``: run the reconciler once, now.

The same run a worker service makes every ``reconciler.interval_s`` (engine/reconciler.py;
docs/operations.md, "Reconciler"): open and recently completed migrations against the network
and the PSB; new, changed, repeated and cleared findings are recorded as ``finding`` audit
events. Prints every open finding (and those cleared by this run). Exit 0 when no finding is
open, 1 when one is (or another run holds the lease), 2 for an unknown batch.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from migration_engine.errors import InputError

if TYPE_CHECKING:
    from migration_engine.engine.runtime import Runtime


def add_parser(sub: Any) -> None:
    """Register the ``reconcile`` subcommand on the CLI's subparsers."""
    p = sub.add_parser("reconcile", help="compare open and recent migrations with the network and the PSB, once")
    p.add_argument("--batch", help="only this batch's migrations")
    p.add_argument("--json", action="store_true")


def run(rt: Runtime, args: argparse.Namespace) -> int:
    store = rt.checked_store()
    store.require_audit_key()  # findings are audit events
    if args.batch is not None and store.batch_info(args.batch) is None:
        raise InputError(f"there is no batch named {args.batch!r}")
    reconciler = rt.reconciler()
    try:
        findings = reconciler.run_once(batch_name=args.batch)
    finally:
        reconciler.close()
    stats = reconciler.last_run
    open_ones = [f for f in findings if f.status == "open"]
    if args.json:
        data = {
            "batch": args.batch,
            "checked": stats.checked,
            "lookups_failed": stats.lookups_failed,
            "network": reconciler.network is not None,
            "open": len(open_ones),
            "recorded": stats.recorded,
            "cleared": stats.cleared,
            "findings": [f.as_dict() for f in findings],
        }
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        network = "" if reconciler.network is not None else " (network not checked: set verify.econnect_smp_host)"
        print(
            f"checked {stats.checked} migrations{network}: {len(open_ones)} open findings, "
            f"{stats.recorded} recorded, {stats.cleared} cleared, {stats.lookups_failed} lookups failed"
        )
        for f in findings:
            print(f"  {f.kind:<18} {f.status:<7} {f.party_id}  {f.direction.value} {f.state.value}: {f.summary}")
            if f.status == "open":
                print(f"  {'':<18} {'':<7} what to do: {f.action}")
    return 1 if open_ones else 0
