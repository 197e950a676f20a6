"""The benchmark's code at a tiny size: every case runs and yields every figure, with the median
and range of its rounds (no timing checks; `make bench` is where the figures mean something)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from bench import cases, report

FIGURES = {
    "efficiency",
    "raw_efficiency",
    "cpu_per_call_ratio",
    "calls_per_migration",
    "speedup_vs_naive",
    "overhead_ratio_sqlite",
    "overhead_ratio_postgresql",
    "scaleout_speedup",
    "scaleout_efficiency_1",
    "scaleout_efficiency_n",
    "import_100k_s",
    "import_100k_peak_mb",
    "status_100k_s",
    "worker_rss_growth",
}
REPEATED_FIGURES = FIGURES - {"calls_per_migration", "import_100k_s", "import_100k_peak_mb", "status_100k_s",
                              "worker_rss_growth"}


@pytest.mark.slow
@pytest.mark.postgres
def test_every_case_runs_and_yields_every_figure(tmp_path: Path, postgres_admin_url: Any) -> None:
    params = dataclasses.replace(cases.QUICK, postgres_url=postgres_admin_url.render_as_string(hide_password=False))
    assert params.rounds >= 2  # the rounds and their spread are exercised too
    results = report.with_targets(cases.run_all(params, progress=lambda _: None))

    assert set(results) >= FIGURES
    assert set(results["targets"]) == {t.key for t in report.TARGETS}
    assert "scaleout_speedup" not in results["targets"]  # reported, with no target on two cores
    assert results["cores"] and results["parameters"]["parties"] == cases.QUICK.parties
    for case in cases.CASES:
        assert results["raw"][case]["case_s"] > 0
        expected = params.rounds if case in cases.REPEATED else 1
        assert len(results["raw"][case]["rounds"]) == expected, case
    assert set(results["spread"]) == REPEATED_FIGURES
    for key, spread in results["spread"].items():
        assert len(spread["runs"]) == params.rounds, key
        assert spread["min"] <= results[key] == spread["median"] <= spread["max"], key
        assert results[key] > 0, key
    for direction, calls in results["calls_per_migration"].items():
        assert calls["measured"] == calls["minimum"], direction  # no wasted poll, no repeated call
    for rnd in results["raw"]["efficiency"]["rounds"]:
        assert rnd["raw_calls"] == rnd["min_calls"]  # the bare loop makes exactly the calls the tables need
        assert rnd["engine_cpu_s"] > 0 and rnd["raw_cpu_s"] > 0
    shown = report.table(results)
    assert "worker_rss_growth" in shown and "cpu_per_call_ratio" in shown

    out = tmp_path / "results.json"
    report.write(results, out)
    assert set(json.loads(out.read_text(encoding="utf-8"))) >= FIGURES


def test_rounds_are_interleaved_and_summarised_by_median_and_range(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without a sandbox: the repeated cases run round by round, the others once at the end."""
    order: list[tuple[str, int]] = []
    values = {"efficiency": [0.7, 0.5, 0.6], "overhead_ratio_sqlite": [0.4, 0.9, 0.5]}

    def case(name: str, key: str) -> cases.Case:
        def run(p: cases.Params, folder: Path, i: int) -> dict[str, Any]:
            order.append((name, i))
            return {key: values[key][i] if key in values else 2.0, "raw": {"i": i}}

        return run

    monkeypatch.setattr(
        cases,
        "CASES",
        {
            "efficiency": case("efficiency", "efficiency"),
            "overhead": case("overhead", "overhead_ratio_sqlite"),
            "size": case("size", "worker_rss_growth"),
        },
    )
    results = cases.run_all(dataclasses.replace(cases.QUICK, rounds=3), progress=lambda _: None)

    assert order == [("efficiency", 0), ("overhead", 0), ("efficiency", 1), ("overhead", 1),
                     ("efficiency", 2), ("overhead", 2), ("size", 0)]
    assert results["efficiency"] == 0.6
    assert results["spread"]["efficiency"] == {"median": 0.6, "min": 0.5, "max": 0.7, "runs": [0.7, 0.5, 0.6]}
    assert results["overhead_ratio_sqlite"] == 0.5
    assert results["worker_rss_growth"] == 2.0 and "worker_rss_growth" not in results["spread"]
    assert [r["i"] for r in results["raw"]["overhead"]["rounds"]] == [0, 1, 2]
    table = report.table(report.with_targets(results))
    assert "0.5 – 0.7" in table and " 3 " in table
