"""`report --format`: which writer renders a ``BatchReport`` as CSV, JSON or HTML.

Kept apart from both writers' modules so the imports run one way: this picks among them,
``report_html`` renders a ``batch_report.BatchReport``, and ``batch_report`` knows neither.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, TYPE_CHECKING

from migration_engine.backoffice.batch_report import BatchReport, write_csv, write_json
from migration_engine.backoffice.report_html import write_html
from migration_engine.errors import InputError

if TYPE_CHECKING:
    from migration_engine.backoffice.plan import Plan

WRITERS: dict[str, Callable[[BatchReport, IO[str]], int]] = {"csv": write_csv, "json": write_json, "html": write_html}
FORMATS = tuple(WRITERS)


def write(rep: BatchReport, fmt: str, out: IO[str], *, plan: Plan | None = None) -> int:
    """Write the report in ``fmt`` (csv, json or html); how many party rows. ``plan`` (the
    preflight plan's section) goes with html only: `plan --json` / `--format csv` has it as data."""
    writer = WRITERS.get(fmt)
    if writer is None:
        raise InputError(f"unknown report format {fmt!r}; use one of {', '.join(FORMATS)}")
    if plan is not None:
        if fmt != "html":
            raise InputError("--plan goes with --format html; `plan --batch NAME` gives it as text, JSON or CSV")
        return write_html(rep, out, plan=plan)
    return writer(rep, out)
