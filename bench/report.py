"""The benchmark targets, the printed table of figures against them, and results.json."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Target:
    key: str
    label: str
    bound: float
    higher_is_better: bool

    def met(self, value: float) -> bool:
        return value >= self.bound if self.higher_is_better else value <= self.bound

    @property
    def shown(self) -> str:
        return f"{'≥' if self.higher_is_better else '≤'} {self.bound:g}"


TARGETS = (
    Target("efficiency", "efficiency vs Little's law (50 ms, c=32, SQLite)", 0.80, True),
    Target("speedup_vs_naive", "speedup vs sequential script", 25, True),
    Target("overhead_ratio_sqlite", "engine/raw calls per s at 0 ms, SQLite", 0.5, True),
    Target("overhead_ratio_postgresql", "engine/raw calls per s at 0 ms, PostgreSQL", 0.5, True),
    Target("scaleout_4", "4 workers vs 1 (PostgreSQL, c=8 each)", 3.2, True),
    Target("import_100k_s", "import of 100k rows, s", 20, False),
    Target("import_100k_peak_mb", "import of 100k rows, peak MB", 300, False),
    Target("status_100k_s", "`status` on 100k migrations, s", 1.0, False),
    Target("worker_rss_growth", "worker RSS after 20k / after 2k", 1.2, False),
)


def table(results: dict[str, Any]) -> str:
    """The figures against their targets, one line each, and the calls per migration."""
    lines = [f"{'figure':<28} {'value':>9}  {'target':<8} {'met':<4} what", "-" * 100]
    for t in TARGETS:
        if t.key not in results:
            continue
        value = float(results[t.key])
        lines.append(f"{t.key:<28} {value:>9g}  {t.shown:<8} {'yes' if t.met(value) else 'NO':<4} {t.label}")
    for direction, calls in results.get("calls_per_migration", {}).items():
        lines.append(
            f"{'calls_per_migration':<28} {calls['measured']:>9g}  {'= ' + str(calls['minimum']):<8} "
            f"{'yes' if calls['measured'] <= calls['minimum'] else 'NO':<4} {direction} (minimum the table needs)"
        )
    return "\n".join(lines)


def with_targets(results: dict[str, Any]) -> dict[str, Any]:
    out = dict(results)
    out["targets"] = {
        t.key: {"target": t.shown, "met": t.met(float(results[t.key]))} for t in TARGETS if t.key in results
    }
    out["generated_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return out


def write(results: dict[str, Any], path: Path) -> None:
    """Write atomically (a .tmp file renamed), so a failed run leaves the last results alone."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
