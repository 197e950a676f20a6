"""How `status` looks: plain lines, a rich table, and `status --watch`, which refreshes it.

The data is ``report.status`` (what `status --json` prints); this module only renders it.
`--watch` redraws a rich ``Live`` table on a terminal and, elsewhere (a pipe, a log file),
prints the plain lines again whenever they change, each block headed by the time, until
Ctrl-C (which ends the watch normally, exit 0).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:  # rich is imported when a table is drawn: plain `status` starts without it
    from rich.console import Group

StatusData = dict[str, Any]


def status_lines(data: StatusData) -> list[str]:
    """`status` as plain text lines."""
    lines = [
        f"batch: {data['batch'] or 'all'}   total {data['total']}   done {data['percent_done']}%   "
        f"completed in the last hour {data['throughput_last_hour']}   paused {data['paused']}"
    ]
    for direction, counts in data["by_direction"].items():
        shown = {k: v for k, v in counts.items() if v}
        lines.append(f"  {direction:<14} " + ("  ".join(f"{k}={v}" for k, v in shown.items()) or "-"))
    if data["oldest_waiting"]:
        o = data["oldest_waiting"]
        lines.append(f"  oldest waiting: {o['party_id']} in {o['state']} since {o['since']}")
    if data["errors_by_code"]:
        lines.append("  errors: " + "  ".join(f"{k}={v}" for k, v in data["errors_by_code"].items()))
    lines += pacing_lines(data.get("pacing", []))
    return lines + finding_lines(data.get("findings")) + worker_lines(data.get("workers", []))


def pacing_lines(pacing: list[dict[str, Any]]) -> list[str]:
    """One line per scheduled batch: window open or closed, starts against the caps, forecast."""
    return [f"  schedule {item['line']}" for item in pacing]


def finding_lines(findings: dict[str, Any] | None) -> list[str]:
    """The reconciler's open findings: a count per kind, then one line for each of the oldest few."""
    if not findings or not findings["open"]:
        return []
    lines = [f"  findings: {findings['open']} open  " + "  ".join(f"{k}={v}" for k, v in findings["by_kind"].items())]
    for f in findings["first"]:
        where = f"{f['party_id']} ({f['direction']} {f['state']})"
        lines.append(f"    {f['kind']}  {where} since {f['since']}: {f['summary']}")
    more = findings["open"] - len(findings["first"])
    if more > 0:
        lines.append(f"    ... and {more} more (`peppol-migrate reconcile` lists them all)")
    return lines


def worker_lines(workers: list[dict[str, Any]]) -> list[str]:
    """One line per live worker (its circuit, and why when not closed); a count of the others."""
    if not workers:
        return []
    live = [w for w in workers if w["alive"]]
    gone = len(workers) - len(live)
    lines = [f"  workers: {len(live)} alive" + (f", {gone} stopped or lost in the last hour" if gone else "")]
    for w in live:
        why = f" because {w['circuit_reason']}" if w["circuit"] != "closed" and w["circuit_reason"] else ""
        lines.append(
            f"    {w['worker_id']}  circuit {w['circuit']}{why}  steps {w['steps_run']}  heartbeat {w['heartbeat_at']}"
        )
    return lines


def status_renderable(data: StatusData, *, at: datetime | None = None) -> Group:
    """`status` as a rich table of states per direction with the figures above it."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    head = Text.assemble(
        ("batch ", "dim"),
        (str(data["batch"] or "all"), "bold"),
        f"   total {data['total']}   done {data['percent_done']}%   ",
        f"completed in the last hour {data['throughput_last_hour']}   paused {data['paused']}",
    )
    directions = list(data["by_direction"])
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("state")
    for d in directions:
        table.add_column(d, justify="right")
    names: list[str] = []
    for counts in data["by_direction"].values():
        names += [name for name in counts if name not in names]
    for name in names:
        cells = [data["by_direction"][d].get(name) for d in directions]
        if any(cells):
            table.add_row(name, *("-" if c is None else str(c) for c in cells))
    parts: list[Any] = [head, table]
    if data["oldest_waiting"]:
        o = data["oldest_waiting"]
        parts.append(Text(f"oldest waiting: {o['party_id']} in {o['state']} since {o['since']}"))
    if data["errors_by_code"]:
        parts.append(Text("errors: " + "  ".join(f"{k}={v}" for k, v in data["errors_by_code"].items()), "red"))
    parts += [Text(line.strip(), "cyan") for line in pacing_lines(data.get("pacing", []))]
    parts += [Text(line.strip(), "yellow") for line in finding_lines(data.get("findings"))]
    parts += [Text(line.strip()) for line in worker_lines(data.get("workers", []))]
    if at is not None:
        parts.append(Text(f"updated {at.strftime('%H:%M:%S')} UTC - Ctrl-C to stop", "dim"))
    return Group(*parts)


def watch(
    fetch: Callable[[], StatusData],
    *,
    interval_s: float,
    tty: bool | None = None,
    out: IO[str] | None = None,
    stop: threading.Event | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """Show ``fetch()`` every ``interval_s`` until ``stop`` is set or Ctrl-C."""
    stream = out or sys.stdout
    is_tty = stream.isatty() if tty is None else tty
    stop = stop or threading.Event()
    try:
        if is_tty:
            from rich.console import Console
            from rich.live import Live

            console = Console(file=stream)
            with Live(status_renderable(fetch(), at=now()), console=console, auto_refresh=False) as live:
                while not stop.wait(interval_s):
                    live.update(status_renderable(fetch(), at=now()), refresh=True)
        else:
            last: list[str] | None = None
            while True:
                lines = status_lines(fetch())
                if lines != last:
                    stream.write(f"-- {now().isoformat(timespec='seconds')}\n" + "\n".join(lines) + "\n")
                    stream.flush()
                    last = lines
                if stop.wait(interval_s):
                    break
    except KeyboardInterrupt:
        return
