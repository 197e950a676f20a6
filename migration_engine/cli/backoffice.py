"""The back-office commands of the CLI: `keys export`, `report`, and `status --watch`.

Kept out of ``main.py`` so that module stays a short table of commands; like it, these only
parse, call the engine and print. Exit codes: 0 ok, 1 failed, 2 bad input. The engine, the
reports and rich are imported when a command runs, so that `--help` stays quick.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migration_engine.cli import keys_cmd
from migration_engine.errors import InputError

if TYPE_CHECKING:
    from migration_engine.engine.runtime import Runtime

# report_formats.FORMATS, named here so the parser does not import the report writers; a test
# keeps the two equal.
REPORT_FORMATS = ("csv", "json", "html")


def add_parsers(sub: Any) -> None:
    """Add `keys export` and `report` to the CLI's subcommands."""
    keys = sub.add_parser("keys", help="outbound keys; keys at rest").add_subparsers(dest="keys_command", required=True)
    ex = keys.add_parser(
        "export",
        help="write a batch's outbound keys waiting for handoff to a CSV (mode 0600), mark them delivered",
        description="For handoff.mode = manual: writes party_id, migration_key, issued_at, new_provider of every "
        "outbound migration of the batch in key_issued to FILE (created with mode 0600), then moves each "
        "to key_delivered, audited with --actor. Run it again to export what is left.",
    )
    ex.add_argument("--batch", required=True)
    ex.add_argument("--out", required=True, metavar="FILE", help="the CSV to create (refused if it exists)")
    ex.add_argument("--force", action="store_true", help="replace FILE if it exists")
    ex.add_argument("--actor", default=None, help="who exports (default: the OS user)")
    ex.add_argument("--json", action="store_true")
    keys_cmd.add_parser(keys)  # keys rotate

    rep = sub.add_parser("report", help="a batch's outcome per party, as CSV, JSON or a self-contained HTML page")
    rep.add_argument("--batch", required=True)
    rep.add_argument("--format", choices=REPORT_FORMATS, default="csv")
    rep.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")
    rep.add_argument(
        "--plan",
        action="store_true",
        help="html: add the preflight plan (stored snapshots where taken, live lookups for parties not started)",
    )


def add_watch_arguments(status_parser: argparse.ArgumentParser) -> None:
    status_parser.add_argument("--watch", action="store_true", help="refresh until Ctrl-C")
    status_parser.add_argument("--interval", type=float, default=2.0, metavar="S", help="seconds between refreshes")


def cmd_status(rt: Runtime, args: argparse.Namespace) -> int:
    from migration_engine.backoffice import overview

    store = rt.checked_store()

    def fetch() -> dict[str, Any]:
        return overview.status(store, batch_name=args.batch, now=rt.clock.now())

    if getattr(args, "watch", False):
        if args.json:
            raise InputError("--watch shows the status on screen; use --json without it")
        if args.interval <= 0:
            raise InputError("--interval must be more than 0 seconds")
        from migration_engine.cli import status_view

        status_view.watch(fetch, interval_s=args.interval, now=rt.clock.now)
        return 0
    data = fetch()
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    else:
        from migration_engine.cli import status_view

        print("\n".join(status_view.status_lines(data)))
    return 0


def cmd_keys_export(rt: Runtime, args: argparse.Namespace, actor: str) -> int:
    from migration_engine.backoffice.key_export import export_keys

    store = rt.checked_store()
    result = export_keys(
        store, rt.vault(), rt.settings, batch_name=args.batch, out=args.out, actor=actor, force=args.force
    )
    if args.json:
        print(json.dumps(result.as_dict(), indent=2, ensure_ascii=False))
    elif result.file is None:
        print(f"batch {args.batch}: no outbound key is waiting for handoff; no file written")
    else:
        print(
            f"exported {len(result.exported)} key(s) of batch {args.batch} to {result.file} (mode 0600); "
            f"{len(result.delivered)} migration(s) now key_delivered"
        )
    for s in result.skipped:
        print(f"  skipped {s.party_id} ({s.state}): {s.why}", file=sys.stderr)
    return 0 if len(result.delivered) == len(result.exported) else 1


def cmd_report(rt: Runtime, args: argparse.Namespace) -> int:
    from migration_engine.backoffice import batch_report, report_formats

    store = rt.checked_store()
    rep = batch_report.build(store, batch_name=args.batch, now=rt.clock.now())
    plan = None
    if getattr(args, "plan", False):  # taken before the file is opened: a failed lookup leaves no half report
        if args.format != "html":
            raise InputError("--plan goes with --format html; `peppol-migrate plan --batch NAME` gives text, JSON, CSV")
        from migration_engine.backoffice.plan import SCHEME_WARNING_DAYS
        from migration_engine.cli.plan_cmd import batch_plan

        plan = batch_plan(rt, args.batch, warn_days=SCHEME_WARNING_DAYS, stored=True)
    if not args.out:
        report_formats.write(rep, args.format, sys.stdout, plan=plan)
        return 0
    path = Path(args.out)
    try:
        # 0600 like the database: a report names every party of the batch and its errors.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        os.fchmod(fd, 0o600)  # an existing file keeps its mode otherwise
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            n = report_formats.write(rep, args.format, fh, plan=plan)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
    print(f"report of batch {args.batch} ({n} parties, {args.format}) written to {path}", file=sys.stderr)
    return 0
