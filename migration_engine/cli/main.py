# PYTHON_ARGCOMPLETE_OK (argcomplete's global completion looks for this in the script's module)
"""The command line: parse, call the engine, print.

Exit codes: 0 ok, 1 operation failed, 2 bad input (argument, setting, missing database),
130 interrupted (Ctrl-C), 141 standard output closed early (``| head``: a quiet exit);
`run --until-settled` adds 3 (the open migrations wait on others) and 4 (some need a person).

Quick to start: this module imports only argparse, the error tree and the command modules'
parsers. Each command imports what it needs when it runs (the engine, SQLAlchemy, httpx, rich,
the reports, the sandbox), so `--help` and `--version` never load them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migration_engine import __version__
from migration_engine.cli import (
    alerts_cmd,
    audit_cmd,
    backoffice,
    batch_cmd,
    config_cmd,
    keys_cmd,
    lookup,
    plan_cmd,
    reconcile_cmd,
    run_cmd,
    serve_cmd,
)
from migration_engine.cli import sandbox as sandbox_command
from migration_engine.cli.actors import actor as actor_of
from migration_engine.cli.logs import FORMATS as LOG_FORMATS
from migration_engine.cli.logs import LEVELS as LOG_LEVELS
from migration_engine.cli.logs import setup_logging
from migration_engine.errors import ImportRejected, InputError, PeppolMigrateError

if TYPE_CHECKING:
    from migration_engine.engine.runtime import Runtime

log = logging.getLogger("migration_engine.cli")

# Named here, not imported, so the parser loads neither the settings nor the back office; a
# test keeps them equal to settings.ENV_PREFIX and backoffice.actions.ACTIONS.
ENV_PREFIX = "PEPPOL_MIGRATE_"
ACTIONS = ("retry", "cancel", "pause", "resume")

INTERRUPTED = run_cmd.INTERRUPTED  # 130: 128 + SIGINT, as a shell reports a Ctrl-C
CLOSED_PIPE = 141  # 128 + SIGPIPE, as a shell reports a writer whose reader went away


def _epilog() -> str:
    """The states and settings help, built only when help is printed (it imports the machine)."""
    from migration_engine import machine
    from migration_engine.machine import Direction

    def states(direction: Direction) -> str:
        return "\n".join("  " + line for line in machine.help_lines(direction))

    return f"""\
configuration: `peppol-migrate config show` prints every setting and where it came from;
`config init` writes a commented starter file. --config FILE (or {ENV_PREFIX}CONFIG)
layers a file over the defaults; {ENV_PREFIX}<SECTION>__<KEY> overrides one value, e.g.
{ENV_PREFIX}DATABASE__URL, {ENV_PREFIX}PSB__BASE_URL, {ENV_PREFIX}PSB__CLIENT_ID.
secrets, from the environment only: {ENV_PREFIX}PSB__CLIENT_SECRET, {ENV_PREFIX}PSB__PASSWORD,
{ENV_PREFIX}PSB__SUBSCRIPTION_KEY, {ENV_PREFIX}KEYS__ENCRYPTION_KEY, {ENV_PREFIX}AUDIT__KEY
(or the same name + _FILE).

exit codes: 0 ok, 1 operation failed, 2 bad input, 130 interrupted, 141 output closed early;
`run --help` lists run's own.

states, to-econnect (inbound):
{states(Direction.TO_ECONNECT)}
states, from-econnect (outbound):
{states(Direction.FROM_ECONNECT)}
"""


class _Parser(argparse.ArgumentParser):
    """The top-level parser: its epilog is computed when help is shown, not at every start."""

    def format_help(self) -> str:
        if self.epilog is None:
            self.epilog = _epilog()
        return super().format_help()


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _level(value: str) -> str:
    return value.upper()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="peppol-migrate",
        description="Migrate Peppol registrations of many parties to and from eConnect's PSB.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--config",
        help="a TOML file layered over the defaults (default: the first of PEPPOL_MIGRATE_CONFIG, "
        "./peppol-migrate.toml, ${XDG_CONFIG_HOME}/peppol-migrate/config.toml that exists)",
    )
    parser.add_argument(
        "--log-level", type=_level, choices=LOG_LEVELS, default="INFO", help="debug, info (default), warning, error"
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=None,
        help="log lines on standard error (default: text on a terminal, json otherwise)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="create or upgrade the schema (the one command that creates a database)")
    db.add_parser("current", help="the database's schema revision, and whether it is the newest")
    db.add_parser("history", help="the schema revisions this version knows, newest first")

    imp = sub.add_parser("import", help="import a batch file (CSV or JSON lines), all or nothing")
    imp.add_argument("file")
    imp.add_argument("--batch", help="batch name (default: the file name without extension)")
    imp.add_argument("--dry-run", action="store_true", help="validate and show the plan; write nothing")
    imp.add_argument("--actor", default=None, help="who imports (default: the OS user)")
    imp.add_argument("--json", action="store_true")
    batch_cmd.add_schedule_arguments(imp, clear=False)  # the batch's schedule, set right after the import

    run_cmd.add_parser(sub)

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

    for action in ACTIONS:
        p = sub.add_parser(action, help=f"{action} one party's migration or a whole batch")
        target = p.add_mutually_exclusive_group(required=True)
        target.add_argument("party", nargs="?")
        target.add_argument("--batch")
        p.add_argument("--actor", default=None)
        p.add_argument("--json", action="store_true")

    audit = sub.add_parser("audit", help="audit trail").add_subparsers(dest="audit_command", required=True)
    audit_cmd.add_parsers(audit)  # verify, anchor, export

    states = sub.add_parser("states", help="print the state machines")
    states.add_argument("--mermaid", action="store_true")

    sandbox_command.add_parser(sub)
    lookup.add_parser(sub)
    plan_cmd.add_parser(sub)
    reconcile_cmd.add_parser(sub)
    alerts_cmd.add_parser(sub)  # alerts send, alerts list
    config_cmd.add_parser(sub)
    batch_cmd.add_parser(sub)  # batch schedule, batch show
    serve_cmd.add_parser(sub)  # the operations console

    demo = sub.add_parser("demo", help="sandbox + SQLite + a mixed batch + the worker until idle + a summary")
    demo.add_argument("--parties", type=int, default=240)
    demo.add_argument("--invalid-keys", type=int, default=None, help="inbound parties given a wrong key")
    demo.add_argument("--keep", action="store_true", help="keep the demo folder and print where it is")
    demo.add_argument("--json", action="store_true", help="print the final summary as JSON")
    return parser


# ---- db -------------------------------------------------------------------------------------


def _cmd_db(rt: Runtime, args: argparse.Namespace) -> int:
    from migration_engine.store import versioning
    from migration_engine.store.database import Database

    if args.db_command == "upgrade":
        rt.store.upgrade()
        print(f"database schema is up to date ({rt.database_label()})")
        return 0
    db = Database(rt.settings.database.url, clock=rt.clock, pool_size=1)
    try:
        if args.db_command == "current":
            current, heads = versioning.current(db)
            if not current:
                print(f"{db.where}: no schema yet; run `peppol-migrate db upgrade`")
            elif current == heads:
                print(f"{db.where}: {', '.join(sorted(current))} (head)")
            else:
                print(
                    f"{db.where}: {', '.join(sorted(current))}, this version's head is {', '.join(sorted(heads))}: "
                    "run `peppol-migrate db upgrade`"
                )
            return 0
        try:  # the revisions need no database; mark the current one when there is one to ask
            revisions = versioning.history(db)
        except PeppolMigrateError:
            revisions = versioning.history(None)
        for rev in revisions:
            marks = ", ".join(m for m, on in (("head", rev.is_head), ("current", rev.is_current)) if on)
            print(f"{rev.down_revision or '<base>'} -> {rev.revision}{f' ({marks})' if marks else ''}  {rev.doc}")
        return 0
    finally:
        db.dispose()


# ---- the other commands ---------------------------------------------------------------------


def _cmd_import(rt: Runtime, args: argparse.Namespace) -> int:
    from migration_engine.backoffice.importer import import_file
    from migration_engine.cli.import_progress import ImportProgress

    schedule = batch_cmd.schedule_edit(args)  # bad schedule flags: exit 2 before the file is read
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
                actor=actor_of(args.actor),
                progress=progress,
                schedule=None if schedule.empty else schedule,
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
        if result.get("schedule") is not None:
            would = "would be " if args.dry_run else ""
            print(f"  schedule: {would}set (see `peppol-migrate batch show {result['batch']}`)")
    return 0


def _cmd_status(rt: Runtime, args: argparse.Namespace) -> int:
    return backoffice.cmd_status(rt, args)


def _cmd_show(rt: Runtime, args: argparse.Namespace) -> int:
    from migration_engine.backoffice import overview
    from migration_engine.peppol.identifiers import canonical

    party = canonical(args.party)
    data = overview.show(rt.checked_store(), party)
    if not data:
        raise InputError(f"party {party} has no migration")
    for m in data:  # receive parity: what the network showed, the latest ``snapshot`` event's detail
        m["snapshot"] = next((e["detail"] for e in reversed(m["events"]) if e["kind"] == "snapshot"), None)
    if args.json:
        _print_json({"party_id": party, "state": data[0]["state"], "migrations": data})
        return 0
    for m in data:
        print(
            f"{m['party_id']}  {m['direction']}  {m['state']}  batch={m['batch']}  attempts={m['attempts']}"
            + (f"  last error: {m['last_error']}" if m["last_error"] else "")
        )
        if m["snapshot"]:
            _print_snapshot(m["snapshot"])
        for e in m["events"]:
            move = f"{e.get('from_state')} -> {e.get('to_state')}" if e.get("from_state") != e.get("to_state") else ""
            http = f"{e['http_method']} {e['http_path']} -> {e.get('http_status')}" if e.get("http_method") else ""
            detail = json.dumps(e["detail"], ensure_ascii=False) if e.get("detail") else ""
            print(f"  {e['seq']:>4} {e['at']}  {e['kind']:<11} {e['actor']:<24} {move} {http} {detail}".rstrip())
    return 0


def _print_snapshot(snap: dict[str, Any]) -> None:
    """The snapshot's summary lines of `show`: where the party was, what it received, its card."""
    where = snap.get("provider") or snap.get("smp_url") or "-"
    print(f"  snapshot {snap.get('taken_at')}: {snap.get('lookup')}, SMP {snap.get('smp_url') or '-'} ({where})")
    for service in snap.get("services") or ():
        print(f"    receives {service.get('document_type')}")
    card = snap.get("business_card") or {}
    if card:
        print("    business card: " + ", ".join(f"{k}={v}" for k, v in card.items() if k != "source"))
    for problem in snap.get("problems") or ():
        print(f"    problem: {problem}")


def _key_from_stdin(party: str) -> str:
    """The first line of standard input, decoded strictly here: the text layer would raise a bare
    UnicodeDecodeError in a UTF-8 locale, or smuggle the bytes in as surrogates in the C locale."""
    raw = sys.stdin.buffer.readline()
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        where = f"byte 0x{raw[exc.start]:02x} at position {exc.start + 1}"
        raise InputError(f"key for {party}: the key read from standard input (-) is not UTF-8 ({where})") from None


def _cmd_key_set(rt: Runtime, args: argparse.Namespace) -> int:
    from migration_engine.backoffice import actions

    key = _key_from_stdin(args.party) if args.key == "-" else args.key
    record = actions.key_set(
        rt.checked_store(),
        rt.vault(),
        rt.settings,
        party=args.party,
        key=key,
        actor=actor_of(args.actor),
    )
    if actions.requested(record, "key set"):
        print(f"{record.party_id}: key set {actions.REQUESTED} (now {record.state})")
    else:
        print(f"{record.party_id}: key set, now {record.state}")
    return 0


def _cmd_action(rt: Runtime, args: argparse.Namespace) -> int:
    from migration_engine.backoffice import actions, overview

    store = rt.checked_store()
    actor = actor_of(args.actor)
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
    requested = actions.requested(applied, args.command)
    if args.json:
        _print_json({**overview.migration_dict(applied), "requested": requested})
    elif requested:
        print(f"{applied.party_id}: {args.command} {actions.REQUESTED} (now {applied.state})")
    else:
        print(f"{applied.party_id}: {args.command} done, now {applied.state}" + (" (paused)" if applied.paused else ""))
    return 0


def _cmd_keys(rt: Runtime, args: argparse.Namespace) -> int:
    if args.keys_command == "rotate":
        return keys_cmd.run(rt, args, actor_of(args.actor))
    return backoffice.cmd_keys_export(rt, args, actor_of(args.actor))


HANDLERS = {
    "db": _cmd_db,
    "import": _cmd_import,
    "run": run_cmd.run,
    "status": _cmd_status,
    "show": _cmd_show,
    "audit": audit_cmd.run,
    "key": _cmd_key_set,
    "keys": _cmd_keys,
    "report": backoffice.cmd_report,
    "plan": plan_cmd.run,
    "reconcile": reconcile_cmd.run,
    "alerts": alerts_cmd.run,
    "batch": batch_cmd.run,
    "serve": serve_cmd.run,
    **{a: _cmd_action for a in ACTIONS},
}


# The sandbox's DNS server, outside a production install (the optional extra "sandbox"); its
# HTTP server (starlette, uvicorn) comes with the package, for the console.
SANDBOX_PACKAGES = frozenset({"dnslib"})


def _run_sandbox_command(args: argparse.Namespace) -> int:
    """``sandbox`` or ``demo``; without the sandbox's server packages, a clear exit 2."""
    try:
        if args.command == "sandbox":
            return sandbox_command.run(args)
        from migration_engine.cli.demo import run_demo

        return run_demo(parties=args.parties, invalid_keys=args.invalid_keys, keep=args.keep, as_json=args.json)
    except ModuleNotFoundError as exc:
        if exc.name not in SANDBOX_PACKAGES:
            raise
        raise InputError(
            f"{args.command}: the sandbox's server is not installed (no module {exc.name!r}); "
            "install it with: pip install 'peppol-migrate[sandbox]'"
        ) from None


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "states":
        from migration_engine import machine
        from migration_engine.machine import Direction

        for d in Direction:
            print(machine.mermaid(d) if args.mermaid else f"{d}:\n" + "\n".join(machine.help_lines(d)))
        return 0
    if args.command in ("sandbox", "demo"):
        return _run_sandbox_command(args)
    if args.command == "config":  # its own settings, with where each value came from
        return config_cmd.run(args)
    from migration_engine.settings import load_settings

    settings = load_settings(args.config)
    if args.command == "lookup":
        return lookup.run(settings, args)
    from migration_engine.engine.runtime import Runtime

    rt = Runtime(settings)
    try:
        return HANDLERS[args.command](rt, args)
    finally:
        rt.close()


def _quiet_closed_stdout() -> int:
    """Standard output's reader went away (``| head``): point stdout at /dev/null so the flush
    at exit does not fail again, and exit without a word (Python's documented recipe)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return CLOSED_PIPE


def _complete(parser: argparse.ArgumentParser) -> None:
    """A shell asks for completions (argcomplete's protocol): print them and exit the process."""
    import argcomplete  # only here: a normal start does not load it

    argcomplete.autocomplete(parser)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
        if argv is None and "_ARGCOMPLETE" in os.environ:
            _complete(parser)
        args = parser.parse_args(argv)
        setup_logging(level=args.log_level, json_lines=None if args.log_format is None else args.log_format == "json")
        code = _dispatch(args)
        sys.stdout.flush()  # here, so a closed pipe shows now and not at interpreter exit
        return code
    except PeppolMigrateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return INTERRUPTED
    except BrokenPipeError:
        return _quiet_closed_stdout()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
