"""Progress of `import`: a rich bar on a terminal, plain structured log lines otherwise.

An import reads its file twice, both times streaming: a check of every row, then (unless
``--dry-run``) the write. The bar's total is the file's line count, counted up front by
reading bytes (cheap next to the parsing), so it is an estimate: blank lines count too.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

log = logging.getLogger("migration_engine.import")

LOG_EVERY = 10_000  # rows between two plain log lines
_READ = 1 << 20


def count_lines(path: Path) -> int:
    """Lines in the file, read a megabyte at a time (a last line without a newline counts)."""
    n, last = 0, b"\n"
    with Path(path).open("rb") as fh:
        while chunk := fh.read(_READ):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


class ImportProgress:
    """Told how many rows each phase has done; shows it as a bar (tty) or as log lines."""

    def __init__(self, path: Path, *, tty: bool | None = None, log_every: int = LOG_EVERY) -> None:
        self._tty = sys.stdout.isatty() if tty is None else tty
        self._total = max(count_lines(path) - 1, 0) if self._tty else None  # less the header
        self._every = log_every
        self._progress: Any = None
        self._task: Any = None
        self._phase = ""
        self._done = 0
        self._logged = 0

    def __enter__(self) -> ImportProgress:
        if self._tty:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("[bold]{task.description:<8}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                transient=True,
            )
            self._progress.start()
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self._finish_phase()
        if self._progress is not None:
            self._progress.stop()

    def phase(self, name: str) -> None:
        """Start a phase (``checking``, ``writing``); the count starts again at 0."""
        self._finish_phase()
        self._phase, self._done, self._logged = name, 0, 0
        if self._progress is not None:
            self._task = self._progress.add_task(name, total=self._total)

    @property
    def done(self) -> int:
        """Rows done in the current phase."""
        return self._done

    def advance(self, rows: int) -> None:
        """``rows`` more rows done in the current phase."""
        self._done += rows
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=self._done)
        elif self._done - self._logged >= self._every:
            self._log()

    def _log(self) -> None:
        self._logged = self._done
        log.info(f"import {self._phase}: {self._done} rows", extra={"action": f"import.{self._phase}"})

    def _finish_phase(self) -> None:
        if not self._phase:
            return
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=self._done, total=self._done)
        elif self._done != self._logged or self._done == 0:
            self._log()
        self._phase = ""
