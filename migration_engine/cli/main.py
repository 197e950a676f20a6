"""The command line: parse, call the engine, print. Exit codes: 0 ok, 1 failed, 2 bad input."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from migration_engine import machine
from migration_engine.backoffice import actions, overview
from migration_engine.cli import backoffice, lookup
from migration_engine.cli import sandbox as sandbox_command
from migration_engine.cli.logs import setup_logging
from migration_engine.engine.runtime import Runtime
from migration_engine.errors import ImportRejected, InputError, PeppolMigrateError
from migration_engine.machine import Direction
from migration_engine.settings import ENV_PREFIX, load_settings, with_overrides

EPILOG = f"""\
configuration: config/default.toml lists every setting; --config FILE (or {ENV_PREFIX}CONFIG)
layers a file over the defaults; {ENV_PREFIX}<SECTION>__<KEY> overrides one value, e.g.
{ENV_PREFIX}DATABASE__URL, {ENV_PREFIX}PSB__BASE_URL, {ENV_PREFIX}PSB__CLIENT_ID.
secrets, from the environment only: {ENV_PREFIX}PSB__CLIENT_SECRET, {ENV_PREFIX}PSB__PASSWORD,
{ENV_PREFIX}PSB__SUBSCRIPTION_KEY, {ENV_PREFIX}KEYS__ENCRYPTION_KEY (or the same name + _FILE).

states, to-econnect (inbound):
  {chr(10).join("  " + line for line in machine.help_lines(Direction.TO_ECONNECT)).strip()}
states, from-econnect (outbound):
  {chr(10).join("  " + line for line in machine.help_lines(Direction.FROM_ECONNECT)).strip()}
"""


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="peppol-migrate",
        description="Migrate Peppol registrations of many parties to and from eConnect's PSB.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="a TOML file layered over config defaults")
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="create or upgrade the schema")

    imp = sub.add_parser("import", help="import a batch file (CSV or JSON lines), all or nothing")
    imp.add_argument("file")
    imp.add_argument("--batch", help="batch name (default: the file name without extension)")
    imp.add_argument("--dry-run", action="store_true", help="validate and show the plan; write nothing")
    imp.add_argument("--actor", default=None, help="who imports (default: the OS user)")
    imp.add_argument("--json", action="store_true")

    run = sub.add_parser("run", help="run the worker")
    run.add_argument("--until-idle", action="store_true", help="exit when nothing is due, scheduled or in flight")
    run.add_argument("--concurrency", type=int, help="steps in flight (default worker.concurrency)")

    st = sub.add_parser("status", help="counts per state and direction, progress, errors")
    st.add_argument("--batch")
    st.add_argument("--json", action="store_true")
    backoffice.add_watch_arguments(st)

    show = sub.add_parser("show", help="a party's migrations with their audit timeline")
    show.add_argument("party")
    show.add_argument("--json", action="store_true")

    key = sub.add_parser("key", help="inbound keys").add_subparsers(dest="key_command", required=True)
    ks = key.add_parser("set", help="supply a (new) migration key for an inbound party")
    ks.add_argument("party")
    ks.add_argument("key", help="the key, or - to read it from standard input (keeps it out of shell history)")
    ks.add_argument("--actor", default=None)
    backoffice.add_parsers(sub)  # keys export, report

    for action in actions.ACTIONS:
        p = sub.add_parser(action, help=f"{action} one party's migration or a whole batch")
        target = p.add_mutually_exclusive_group(required=True)
        target.add_argument("party", nargs="?")
        target.add_argument("--batch")
        p.add_argument("--actor", default=None)
        p.add_argument("--json", action="store_true")

    audit = sub.add_parser("audit", help="audit trail").add_subparsers(dest="audit_command", required=True)
    av = audit.add_parser("verify", help="check every migration's hash chain")
    av.add_argument("--json", action="store_true")

    states = sub.add_parser("states", help="print the state machines")
    states.add_argument("--mermaid", action="store_true")

    sandbox_command.add_parser(sub)
    lookup.add_parser(sub)

    demo = sub.add_parser("demo", help="sandbox + SQLite + a mixed batch + the worker until idle + a summary")
    demo.add_argument("--parties", type=int, default=240)
    demo.add_argument("--invalid-keys", type=int, default=None, help="inbound parties given a wrong key")
    demo.add_argument("--keep", action="store_true", help="keep the demo folder and print where it is")
    demo.add_argument("--json", action="store_true", help="print the final summary as JSON")
    return parser


def _actor(value: str | None) -> str:
    if value:
        return value
    try:
        return f"operator:{getpass.getuser()}"
    except Exception:  # pragma: no cover - no user database in some containers
        return "operator:unknown"


def _cmd_run(rt: Runtime, args: argparse.Namespace) -> int:
    from migration_engine.cli.progress import ProgressDisplay
    from migration_engine.cli.serving import serving_switch_interval

    if args.concurrency:
        rt.settings = with_overrides(rt.settings, worker={"concurrency": args.concurrency})
    worker = rt.worker()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with serving_switch_interval(), ProgressDisplay(worker.store, extra=lambda: f"circuit={worker.breaker.state}"):
        worker.run(until_idle=args.until_idle, stop=stop)
    return 0


def _cmd_import(rt: Runtime, args: argparse.Namespace) -> int:
    from migration_engine.backoffice.importer import import_file
    from migration_engine.cli.import_progress import ImportProgress

    try:
        # A bar on a terminal, log lines otherwise; a missing file is import_file's to report.
        shown = Path(args.file).is_file()
        tty = sys.stdout.isatty() and not args.json
        with ImportProgress(Path(args.file), tty=tty) if shown else contextlib.nullcontext() as progress:
            result = import_file(
                rt,
                path=args.file,
                batch_name=args.batch,
                dry_run=args.dry_run,
                actor=_actor(args.actor),
                progress=progress,
            )
    except ImportRejected as exc:
        if args.json:
            _print_json({"ok": False, "error": str(exc), "problems": exc.problems})
        else:
            print(f"error: {exc}", file=sys.stderr)
            for p in exc.problems:
                col = f", column {p['column']}" if p.get("column") else ""
                val = f", value {p['value']!r}" if p.get("value") not in (None, "") else ""
                print(f"  line {p['line']}{col}{val}: {p['why']}", file=sys.stderr)
        return 2
    if args.json:
        _print_json(result)
    else:
        verb = "would import" if args.dry_run else "imported"
        print(
            f"{verb} {result['rows']} parties into batch {result['batch']}: "
            + ", ".join(f"{k} {v}" for k, v in result["by_direction"].items())
        )
    return 0


def _cmd_status(rt: Runtime, args: argparse.Namespace) -> int:
    return backoffice.cmd_status(rt, args)


def _cmd_show(rt: Runtime, args: argparse.Namespace) -> int:
    from migration_engine.peppol.identifiers import canonical

    party = canonical(args.party)
    data = overview.show(rt.checked_store(), party)
    if not data:
        raise InputError(f"party {party} has no migration")
    if args.json:
        _print_json({"party_id": party, "state": data[0]["state"], "migrations": data})
        return 0
    for m in data:
        print(
            f"{m['party_id']}  {m['direction']}  {m['state']}  batch={m['batch']}  attempts={m['attempts']}"
            + (f"  last error: {m['last_error']}" if m["last_error"] else "")
        )
        for e in m["events"]:
            move = f"{e.get('from_state')} -> {e.get('to_state')}" if e.get("from_state") != e.get("to_state") else ""
            http = f"{e['http_method']} {e['http_path']} -> {e.get('http_status')}" if e.get("http_method") else ""
            detail = json.dumps(e["detail"], ensure_ascii=False) if e.get("detail") else ""
            print(f"  {e['seq']:>4} {e['at']}  {e['kind']:<11} {e['actor']:<24} {move} {http} {detail}".rstrip())
    return 0


def _cmd_key_set(rt: Runtime, args: argparse.Namespace) -> int:
    key = sys.stdin.readline().strip() if args.key == "-" else args.key
    record = actions.key_set(
        rt.checked_store(),
        rt.vault(),
        rt.settings,
        party=args.party,
        key=key,
        actor=_actor(args.actor),
    )
    print(f"{record.party_id}: key set, now {record.state}")
    return 0


def _cmd_action(rt: Runtime, args: argparse.Namespace) -> int:
    store = rt.checked_store()
    actor = _actor(args.actor)
    if args.batch:
        if store.batch_info(args.batch) is None:
            raise InputError(f"there is no batch named {args.batch!r}")
        results = actions.act_on_batch(store, rt.settings, batch_name=args.batch, action=args.command, actor=actor)
        if args.json:
            _print_json([r.__dict__ for r in results])
        elif not results:
            print(f"batch {args.batch}: no open migration to {args.command} (all are completed or cancelled)")
        else:
            for r in results:
                print(f"{r.party_id}: {'ok' if r.ok else 'refused'}: {r.message} ({r.state})")
        return 0 if all(r.ok for r in results) else 1
    record = actions.active_migration(store, args.party, action=args.command)
    applied = actions.operator_action(store, rt.settings, record=record, action=args.command, actor=actor)
    if args.json:
        _print_json(overview.migration_dict(applied))
    else:
        print(f"{applied.party_id}: {args.command} done, now {applied.state}" + (" (paused)" if applied.paused else ""))
    return 0


def _cmd_audit_verify(rt: Runtime, args: argparse.Namespace) -> int:
    broken = rt.checked_store().verify_audit()
    if args.json:
        _print_json({"ok": not broken, "broken": [b.__dict__ for b in broken]})
    elif broken:
        for b in broken:
            print(f"BROKEN migration {b.migration_id} ({b.party_id}) at event {b.seq}: {b.reason}")
    else:
        print("audit trail intact: every hash chain verifies")
    return 1 if broken else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(level=args.log_level.upper())
    try:
        if args.command == "states":
            for d in Direction:
                print(machine.mermaid(d) if args.mermaid else f"{d}:\n" + "\n".join(machine.help_lines(d)))
            return 0
        if args.command == "lookup":
            return lookup.run(load_settings(args.config), args)
        if args.command == "sandbox":
            return sandbox_command.run(args)
        if args.command == "demo":
            from migration_engine.cli.demo import run_demo

            return run_demo(parties=args.parties, invalid_keys=args.invalid_keys, keep=args.keep, as_json=args.json)
        rt = Runtime(load_settings(args.config))
        try:
            if args.command == "db":
                rt.store.upgrade()
                print(f"database schema is up to date ({rt.settings.database.url.split('://')[0]})")
                return 0
            handlers = {
                "import": _cmd_import,
                "run": _cmd_run,
                "status": _cmd_status,
                "show": _cmd_show,
                "audit": _cmd_audit_verify,
                "key": _cmd_key_set,
                "keys": lambda rt, a: backoffice.cmd_keys_export(rt, a, _actor(a.actor)),
                "report": backoffice.cmd_report,
                **{a: _cmd_action for a in actions.ACTIONS},
            }
            return handlers[args.command](rt, args)
        finally:
            rt.close()
    except PeppolMigrateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
