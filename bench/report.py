"""The figures, their targets, the printed table (median and range of the rounds) and results.json."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Figure:
    key: str
    label: str  # formatted with the run's parameters
    bound: float | None  # None: reported, with no target
    higher_is_better: bool = True

    def met(self, value: float) -> bool | None:
        if self.bound is None:
            return None
        return value >= self.bound if self.higher_is_better else value <= self.bound

    @property
    def shown(self) -> str:
        if self.bound is None:
            return "-"
        return f"{'≥' if self.higher_is_better else '≤'} {self.bound:g}"


FIGURES = (
    Figure("efficiency", "engine vs Little's law ({latency_ms:g} ms, c={concurrency}, SQLite)", 0.80),
    Figure("raw_efficiency", "bare httpx loop vs Little's law, same latency and c (reference)", None),
    Figure("cpu_per_call_ratio", "engine / bare httpx CPU s per call ({latency_ms:g} ms, c={concurrency})", 1.5, False),
    Figure("speedup_vs_naive", "speedup vs sequential httpx script ({latency_ms:g} ms)", 25),
    Figure("overhead_ratio_sqlite", "engine / bare httpx calls per s at 0 ms, c={concurrency}, SQLite", 0.5),
    Figure("overhead_ratio_postgresql", "engine / bare httpx calls per s at 0 ms, c={concurrency}, PostgreSQL", 0.5),
    Figure(
        "scaleout_speedup",
        "{scaleout_workers} processes x c={scaleout_concurrency} vs 1 x c={scaleout_total}, time to finish "
        "(PostgreSQL, {latency_ms:g} ms)",
        None,
    ),
    Figure("scaleout_efficiency_1", "1 process x c={scaleout_total} vs Little's law (PostgreSQL)", None),
    Figure(
        "scaleout_efficiency_n",
        "{scaleout_workers} processes x c={scaleout_concurrency} vs Little's law (PostgreSQL)",
        None,
    ),
    Figure("import_100k_s", "import of {import_rows} rows, s", 20, False),
    Figure("import_100k_peak_mb", "import of {import_rows} rows, peak MB", 300, False),
    Figure("status_100k_s", "`status` on {import_rows} migrations, s (median of {status_runs})", 1.0, False),
    Figure("worker_rss_growth", "worker RSS after {rss_high} / after {rss_low} migrations", 1.2, False),
    Figure("cli_startup_s", "`peppol-migrate --help` / `--version`, slower, s (median of {startup_runs})", 0.25, False),
    Figure("cli_status_empty_s", "`peppol-migrate status`, empty database, s (median of {startup_runs})", 0.5, False),
)
TARGETS = tuple(f for f in FIGURES if f.bound is not None)


def _label(f: Figure, parameters: dict[str, Any]) -> str:
    low, high = parameters.get("rss_checkpoints", (0, 0))
    try:
        return f.label.format(**parameters, rss_low=low, rss_high=high)
    except (KeyError, IndexError, ValueError):
        return f.label


def table(results: dict[str, Any]) -> str:
    """The figures, one line each: median, range of the rounds (a dash for a single run), target."""
    parameters = results.get("parameters", {})
    spreads = results.get("spread", {})
    lines = [f"{'figure':<28} {'median':>8}  {'range':<17} {'n':>2}  {'target':<7} {'met':<4} what", "-" * 120]
    for f in FIGURES:
        if f.key not in results:
            continue
        value = float(results[f.key])
        spread = spreads.get(f.key)
        shown_range = f"{spread['min']:g} – {spread['max']:g}" if spread else "-"
        n = len(spread["runs"]) if spread else 1
        met = {True: "yes", False: "NO", None: "-"}[f.met(value)]
        lines.append(
            f"{f.key:<28} {value:>8g}  {shown_range:<17} {n:>2}  {f.shown:<7} {met:<4} {_label(f, parameters)}"
        )
    for direction, calls in results.get("calls_per_migration", {}).items():
        met = "yes" if calls["measured"] <= calls["minimum"] else "NO"
        lines.append(
            f"{'calls_per_migration':<28} {calls['measured']:>8g}  {'(worst round)':<17} {'':>2}  "
            f"{'= ' + str(calls['minimum']):<7} {met:<4} {direction} (the minimum the state table needs)"
        )
    return "\n".join(lines)


def with_targets(results: dict[str, Any]) -> dict[str, Any]:
    """``results`` with, for each figure that has a target, the target and whether its median met it."""
    out = dict(results)
    out["targets"] = {
        f.key: {"target": f.shown, "met": f.met(float(results[f.key]))} for f in TARGETS if f.key in results
    }
    out["generated_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return out


def write(results: dict[str, Any], path: Path) -> None:
    """Write atomically (a .tmp file renamed), so a failed run leaves the last results alone."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
