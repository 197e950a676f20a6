"""``peppol-migrate plan FILE`` / ``plan --batch NAME``: the preflight plan (``docs/operations.md``,
"Preflight plan").

For a file, before import: the same reading as ``import`` (a bad row is reported the same way,
exit 2), except that the party id's scheme checks and the key's format rule become the plan's
classes. For a batch: its migrations that have not started (``requested``). Every party is
looked up live (SML, SMP, Directory) within the ``lookups`` settings' limits; progress goes to
standard error. Exit 0 when nothing blocks, 1 when something does, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migration_engine.errors import ImportRejected, InputError

if TYPE_CHECKING:
    from migration_engine.backoffice.plan import Plan, PlanRow, SnapshotFn
    from migration_engine.clock import Clock
    from migration_engine.engine.runtime import Runtime
    from migration_engine.peppol.snapshot import PartySnapshot
    from migration_engine.settings import Settings

log = logging.getLogger("migration_engine.plan")

FORMATS = ("text", "json", "csv")
LOG_EVERY = 100  # parties between two progress log lines when standard error is no terminal


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "plan",
        help="preflight: what the Peppol network says about each party of a file or batch, and what to do",
        description="Looks up every party (SML, SMP, Directory) and classifies it: ready, already_econnect, "
        "not_registered, other_provider, not_econnect, smp_unreachable, smp_inconsistent, scheme_removed, "
        "scheme_deprecated, key_suspect, id_suspect. Exit 0 when nothing blocks, 1 when something does, "
        "2 on bad input.",
    )
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("file", nargs="?", help="a batch file (CSV or JSON lines), before import")
    target.add_argument("--batch", help="an imported batch: its migrations that have not started")
    p.add_argument("--format", choices=FORMATS, default=None, help="text (default), json or csv")
    p.add_argument("--json", action="store_true", help="the same as --format json")
    p.add_argument("--all", action="store_true", help="text: list every party, not only those that are not ready")
    p.add_argument(
        "--scheme-warning-days",
        type=int,
        default=None,
        metavar="N",
        help="a scheme removed within N days from now is a warning (default 90)",
    )


class PlanProgress:
    """Parties planned so far, on standard error: a bar on a terminal, log lines otherwise."""

    def __init__(self, total: int, *, tty: bool | None = None) -> None:
        self._total = total
        self._tty = sys.stderr.isatty() if tty is None else tty
        self._done = 0
        self._logged = 0
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> PlanProgress:
        if self._tty and self._total:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("[bold]planning"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("planning", total=self._total)
        return self

    def advance(self, n: int) -> None:
        self._done += n
        if self._progress is not None:
            self._progress.update(self._task, completed=self._done)
        elif self._done - self._logged >= LOG_EVERY or self._done == self._total:
            self._logged = self._done
            log.info(f"plan: {self._done} of {self._total} parties looked up", extra={"action": "plan.progress"})

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


@contextmanager
def lookups(settings: Settings, clock: Clock) -> Iterator[tuple[SnapshotFn, dict[str, Any], int]]:
    """The snapshot function, the limits it runs under, and how many lookups may run at once."""
    from migration_engine.peppol.snapshots import NetworkLookups

    network = NetworkLookups.from_settings(settings, clock=clock)
    lim = settings.lookups
    limits = {
        "dns_per_s": lim.dns_per_s,
        "smp_per_s_per_host": lim.smp_per_s,
        "directory_per_s": lim.directory_per_s,
        "max_concurrency": lim.max_concurrency,
    }
    try:
        yield network.snapshot, limits, lim.max_concurrency
    finally:
        network.close()


def _econnect_smp(settings: Settings) -> str:
    host = settings.verify.econnect_smp_host.strip()
    if not host:
        raise InputError(
            "plan needs eConnect's SMP to tell its parties from others': set verify.econnect_smp_host "
            "(PEPPOL_MIGRATE_VERIFY__ECONNECT_SMP_HOST)"
        )
    return host


def _take(
    rt: Runtime,
    rows: list[PlanRow],
    *,
    warn_days: int,
    known: dict[str, PartySnapshot] | None = None,
    tty: bool | None = None,
) -> tuple[list[Any], dict[str, Any]]:
    from migration_engine.backoffice import plan

    econnect = _econnect_smp(rt.settings)
    missing = [r for r in rows if not known or r.party_id not in known]
    with (
        lookups(rt.settings, rt.clock) as (snapshot, limits, concurrency),
        PlanProgress(len(missing), tty=tty) as progress,
    ):
        done: Callable[[int], None] = progress.advance
        planned = plan.take(
            rows,
            snapshot,
            econnect_smp=econnect,
            now=rt.clock.now,
            concurrency=concurrency,
            warn_days=warn_days,
            known=known,
            on_done=done,
        )
    return planned, limits


def file_plan(rt: Runtime, path: Path, *, warn_days: int) -> Plan:
    """The plan of a batch file; ``ImportRejected`` (exit 2) when a row is bad, as ``import`` says."""
    from migration_engine.backoffice import plan
    from migration_engine.backoffice.batch_file import validate_file
    from migration_engine.backoffice.batch_report import file_name

    if not path.is_file():
        raise InputError(f"{path}: no such file")
    default = rt.settings.profiles.default
    result = validate_file(path, default_profile=default, known_profiles=rt.profiles.names(), strict=False)
    if result.problems:
        shown = f"{result.problem_count} problem(s)" + (" (first ones shown)" if result.truncated else "")
        raise ImportRejected(f"{path}: {shown}; nothing was planned", problems=[p.as_dict() for p in result.problems])
    taken_at = rt.clock.now()
    rows = list(plan.file_rows(path, default_profile=default))
    planned, limits = _take(rt, rows, warn_days=warn_days)
    return plan.Plan({"file": file_name(str(path))}, taken_at, planned, limits, warn_days)


def batch_plan(rt: Runtime, batch: str, *, warn_days: int, stored: bool = False, tty: bool | None = None) -> Plan:
    """The plan of a stored batch: its migrations that have not started, looked up live.

    ``stored`` (the report's section): a migration's latest ``snapshot`` event stands for its
    lookup, and migrations under way with such an event are planned from it as well.
    """
    from migration_engine.backoffice import plan

    store = rt.checked_store()
    if store.batch_info(batch) is None:
        raise InputError(f"there is no batch named {batch!r}")
    waiting, others = plan.batch_records(store, batch)
    known: dict[str, PartySnapshot] = {}
    if stored:
        from migration_engine.machine import State

        everyone = list(store.list_migrations(batch_name=batch))
        known = plan.stored_snapshots(store, everyone)
        waiting = [r for r in everyone if r.state is State.REQUESTED or r.party_id in known]
        others = len(everyone) - len(waiting)
    taken_at = rt.clock.now()
    rows = [plan.record_row(r) for r in waiting]
    planned, limits = _take(rt, rows, warn_days=warn_days, known=known, tty=tty)
    return plan.Plan({"batch": batch}, taken_at, planned, limits, warn_days, left_out=others)


def _print_rejected(exc: ImportRejected, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"ok": False, "error": str(exc), "problems": exc.problems}, indent=2, ensure_ascii=False))
        return
    print(f"error: {exc}", file=sys.stderr)
    for p in exc.problems:
        col = f", column {p['column']}" if p.get("column") else ""
        val = f", value {p['value']!r}" if p.get("value") not in (None, "") else ""
        print(f"  line {p['line']}{col}{val}: {p['why']}", file=sys.stderr)


def run(rt: Runtime, args: argparse.Namespace) -> int:
    from migration_engine.backoffice import plan as plan_module
    from migration_engine.backoffice import plan_formats

    fmt = "json" if args.json else (args.format or "text")
    if args.json and args.format not in (None, "json"):
        raise InputError(f"--json and --format {args.format} contradict each other")
    days = plan_module.SCHEME_WARNING_DAYS if args.scheme_warning_days is None else args.scheme_warning_days
    if days < 0:
        raise InputError("--scheme-warning-days must be 0 or more")
    try:
        if args.batch:
            taken = batch_plan(rt, args.batch, warn_days=days)
        else:
            taken = file_plan(rt, Path(args.file), warn_days=days)
    except ImportRejected as exc:
        _print_rejected(exc, fmt == "json")
        return 2
    if fmt == "json":
        plan_formats.write_json(taken, sys.stdout)
    elif fmt == "csv":
        plan_formats.write_csv(taken, sys.stdout)
    else:
        print("\n".join(plan_formats.text_lines(taken, show_all=args.all)))
    return 1 if taken.blocks else 0
