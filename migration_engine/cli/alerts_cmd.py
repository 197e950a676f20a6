"""``peppol-migrate alerts send [--once]`` and ``alerts list [--pending] [--limit N] [--json]``.

send   produce, digest and send alerts now (engine/alerts.py), the run a worker service makes
       every ``alerts.interval_s``; ``--once`` also makes the messages of digests whose window
       is still open, so nothing waits. Exit 0 when every due delivery succeeded, 1 when one
       failed (it stays in the outbox and is tried again) or another run holds the lease.
list   the newest messages of the outbox with their delivery state per destination (a webhook
       is shown by its host only: its URL may hold a token).
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from migration_engine.errors import InputError

if TYPE_CHECKING:
    from migration_engine.engine.runtime import Runtime


def add_parser(sub: Any) -> None:
    """Register ``alerts`` and its subcommands on the CLI's subparsers."""
    alerts = sub.add_parser("alerts", help="alerts: webhooks and e-mail from the outbox").add_subparsers(
        dest="alerts_command", required=True
    )
    send = alerts.add_parser("send", help="produce, digest and send alerts now")
    send.add_argument("--once", action="store_true", help="also close digests whose window is still open")
    send.add_argument("--json", action="store_true")
    ls = alerts.add_parser("list", help="the newest alert messages and their deliveries")
    ls.add_argument("--pending", action="store_true", help="only messages with a delivery outstanding")
    ls.add_argument("--limit", type=int, default=20)
    ls.add_argument("--json", action="store_true")


def _send(rt: Runtime, args: argparse.Namespace) -> int:
    settings = rt.settings
    if args.once:
        from dataclasses import replace

        settings = replace(settings, alerts=replace(settings.alerts, digest_s=0.0))
    from migration_engine.engine.alerts import Alerts

    pipeline = Alerts(store=rt.checked_store(), settings=settings, clock=rt.clock)
    stats = pipeline.run_once()
    if stats is None:
        print("another alerts run is under way: try again when it has finished")
        return 1
    if args.json:
        print(json.dumps(stats.__dict__, indent=2))
    else:
        print(
            f"alerts: {stats.produced} produced, {stats.messages} messages made, "
            f"{stats.delivered} delivered, {stats.failed} deliveries failed"
        )
    return 1 if stats.failed else 0


def _list(rt: Runtime, args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise InputError(f"--limit {args.limit}: must be at least 1")
    from migration_engine.engine.alerts_send import Senders

    labels = Senders(rt.settings.alerts)
    rows = rt.checked_store().alerts.messages(limit=args.limit, undelivered=args.pending)
    if args.json:
        out = [
            {
                "id": m.id, "uid": m.uid, "created_at": m.created_at.isoformat(), "kind": m.kind,
                "digest_key": m.digest_key, "count": m.count,
                "deliveries": [
                    {"destination": labels.label(d), "attempts": a,
                     "next_try_at": n.isoformat() if n else None,
                     "delivered_at": at.isoformat() if at else None, "last_error": e}
                    for d, a, n, at, e in m.deliveries
                ],
            }
            for m in rows
        ]  # fmt: skip
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0
    if not rows:
        print("no alert messages" + (" with a delivery outstanding" if args.pending else ""))
    for m in rows:
        print(f"#{m.id} {m.created_at:%Y-%m-%d %H:%M:%S} {m.kind} x{m.count} ({m.digest_key}) id {m.uid}")
        if not m.deliveries:
            print("    no destination was configured")
        for d, a, n, at, e in m.deliveries:
            if at is not None:
                state = f"delivered {at:%Y-%m-%d %H:%M:%S} after {a} attempt{'s' if a != 1 else ''}"
            else:
                when = f"{n:%Y-%m-%d %H:%M:%S}" if n else "-"
                state = f"pending: {a} attempts, next {when}" + (f", last error: {e}" if e else "")
            print(f"    {labels.label(d)}: {state}")
    return 0


def run(rt: Runtime, args: argparse.Namespace) -> int:
    return {"send": _send, "list": _list}[args.alerts_command](rt, args)
