"""Live progress for `run` and `demo`: a rich display on a terminal, log lines otherwise."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from types import TracebackType

from migration_engine.backoffice.overview import per_state_totals
from migration_engine.machine import State
from migration_engine.store import Store

log = logging.getLogger("migration_engine.cli.progress")

FINAL_LIKE = (State.COMPLETED, State.CANCELLED, State.KEY_REJECTED, State.NEEDS_ATTENTION)


def summary_line(totals: dict[str, int]) -> str:
    order = [s.value for s in State]
    return "  ".join(f"{name}={totals[name]}" for name in order if totals.get(name))


class ProgressDisplay:
    """Polls the store's counts twice a second and shows them until closed."""

    def __init__(
        self,
        store: Store,
        *,
        batch_name: str | None = None,
        interval_s: float = 0.5,
        tty: bool | None = None,
        extra: Callable[[], str] | None = None,
    ) -> None:
        self._store = store
        self._batch = batch_name
        self._interval = interval_s
        self._tty = sys.stdout.isatty() if tty is None else tty
        self._extra = extra
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._quieted: logging.Logger | None = None
        self._saved_level = logging.NOTSET

    def _totals(self) -> tuple[int, int, dict[str, int]]:
        totals = per_state_totals(self._store.counts(batch_name=self._batch))
        total = sum(totals.values())
        settled = sum(totals.get(s.value, 0) for s in FINAL_LIKE)
        return total, settled, totals

    def _run_rich(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(
            TextColumn("[bold]migrating"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            transient=False,
        ) as progress:
            task = progress.add_task("", total=None)
            while True:
                total, settled, totals = self._totals()
                extra = f"  {self._extra()}" if self._extra else ""
                progress.update(task, total=total or None, completed=settled, description=summary_line(totals) + extra)
                if self._stop.wait(self._interval):
                    total, settled, totals = self._totals()
                    progress.update(task, total=total or None, completed=settled, description=summary_line(totals))
                    return

    def _run_plain(self) -> None:
        last = ""
        while True:
            stopping = self._stop.wait(max(self._interval, 2.0))
            total, settled, totals = self._totals()
            line = f"progress {settled}/{total} settled: {summary_line(totals)}"
            if line != last or stopping:
                log.info(line, extra={"action": "progress"})
                last = line
            if stopping:
                return

    def __enter__(self) -> ProgressDisplay:
        target = self._run_rich if self._tty else self._run_plain
        if self._tty:  # the live display replaces the per-transition lines; warnings still show
            self._quieted = logging.getLogger("migration_engine")
            self._saved_level = self._quieted.level
            self._quieted.setLevel(logging.WARNING)
        self._thread = threading.Thread(target=target, name="progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._quieted is not None:
            self._quieted.setLevel(self._saved_level)
