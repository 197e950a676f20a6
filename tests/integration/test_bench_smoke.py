"""The benchmark's code at a tiny size: every case runs and yields every figure (no timing checks;
`make bench` is where the figures mean something)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from bench import cases, report

FIGURES = {
    "efficiency",
    "calls_per_migration",
    "speedup_vs_naive",
    "overhead_ratio_sqlite",
    "overhead_ratio_postgresql",
    "scaleout_4",
    "import_100k_s",
    "import_100k_peak_mb",
    "status_100k_s",
    "worker_rss_growth",
}


@pytest.mark.slow
@pytest.mark.postgres
def test_every_case_runs_and_yields_every_figure(tmp_path, postgres_admin_url) -> None:
    params = dataclasses.replace(cases.QUICK, postgres_url=postgres_admin_url.render_as_string(hide_password=False))
    results = report.with_targets(cases.run_all(params, progress=lambda _: None))

    assert set(results) >= FIGURES
    assert set(results["targets"]) == {t.key for t in report.TARGETS}
    assert results["cores"] and results["parameters"]["parties"] == cases.QUICK.parties
    for case in cases.CASES:
        assert results["raw"][case]["case_s"] > 0
    for direction, calls in results["calls_per_migration"].items():
        assert calls["measured"] == calls["minimum"], direction  # no wasted poll, no repeated call
    assert "worker_rss_growth" in report.table(results)

    out = tmp_path / "results.json"
    report.write(results, out)
    assert set(json.loads(out.read_text(encoding="utf-8"))) >= FIGURES
