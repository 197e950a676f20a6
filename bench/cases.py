"""The five cases of the benchmark and their figures. Each case starts its own sandbox process."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import make_url

from bench import naive, scaleout, size
from bench.engine import MIN_CALLS, EngineRun, run_engine
from bench.parties import Party, seed
from bench.sandbox_proc import SandboxProcess


@dataclass(frozen=True)
class Params:
    """The sizes of one run (``FULL`` is what the issue asks; ``QUICK`` is for the smoke test)."""

    parties: int = 2000
    latency_ms: float = 50.0
    concurrency: int = 32
    naive_parties: int = 100  # the sequential script's sample, scaled to ``parties``
    scaleout_parties: int = 2000
    scaleout_workers: int = 4
    scaleout_concurrency: int = 8
    import_rows: int = 100_000
    rss_checkpoints: tuple[int, int] = (2000, 20_000)
    status_runs: int = 3  # `status` is timed this often; the median counts
    repeats: int = 3  # engine runs of case 1; the median counts
    overhead_repeats: int = 2  # (raw, engine) pairs per backend in case 3; the median counts
    postgres_url: str = scaleout.DEFAULT_POSTGRES_URL


FULL = Params()
QUICK = Params(
    parties=8,
    latency_ms=2.0,
    concurrency=4,
    naive_parties=4,
    scaleout_parties=8,
    scaleout_workers=2,
    scaleout_concurrency=2,
    import_rows=200,
    rss_checkpoints=(4, 8),
    status_runs=1,
    repeats=1,
    overhead_repeats=1,
)


def _sqlite(workdir: Path, name: str) -> str:
    return f"sqlite:///{workdir / name}.db"


def _engine(sandbox: SandboxProcess, parties: list[Party], db_url: str, p: Params, workdir: Path) -> EngineRun:
    run = run_engine(sandbox, parties, db_url=db_url, concurrency=p.concurrency, workdir=workdir)
    if not run.all_completed:
        raise RuntimeError(f"an engine run did not complete every migration: {run.states}")
    return run


def efficiency_and_naive(p: Params, workdir: Path) -> dict[str, Any]:
    """Cases 1 and 2: the engine against Little's law (median of ``repeats`` runs, fresh parties and
    database each), and the sequential script on a sample of the same kind of parties, same sandbox."""
    runs: list[tuple[float, EngineRun]] = []
    with SandboxProcess(latency_ms=p.latency_ms) as sandbox:
        for i in range(p.repeats):
            parties = seed(sandbox.url, p.parties, start=i * p.parties)
            run = _engine(sandbox, parties, _sqlite(workdir, f"efficiency-{i}"), p, workdir)
            limit = run.api_calls * p.latency_ms / 1000 / p.concurrency
            runs.append((limit / run.seconds, run))
        sample = seed(sandbox.url, p.naive_parties, start=p.repeats * p.parties)
        since = sandbox.last_seq()
        naive_sample_s = naive.run(sandbox.url, sample)
        naive_calls = len(sandbox.calls(since))
    efficiency, run = sorted(runs, key=lambda r: r[0])[len(runs) // 2]  # the median run
    naive_s = naive_sample_s * p.parties / p.naive_parties
    return {
        "efficiency": round(efficiency, 3),
        "calls_per_migration": {d: {"measured": run.calls_by_direction[d], "minimum": MIN_CALLS[d]} for d in MIN_CALLS},
        "speedup_vs_naive": round(naive_s / run.seconds, 1),
        "raw": {
            "engine_s": round(run.seconds, 2),
            "engine_runs_s": [round(r.seconds, 2) for _, r in runs],
            "efficiency_runs": [round(e, 3) for e, _ in runs],
            "api_calls": run.api_calls,
            "steps": run.steps,
            "limit_s": round(run.api_calls * p.latency_ms / 1000 / p.concurrency, 2),
            "naive_sample_parties": p.naive_parties,
            "naive_sample_s": round(naive_sample_s, 2),
            "naive_sample_calls": naive_calls,
            "naive_s_for_all_parties": round(naive_s, 1),
        },
    }


def overhead(p: Params, workdir: Path) -> dict[str, Any]:
    """Case 3: at latency 0, engine calls/s over a bare httpx loop's at the same concurrency.

    Each engine run is paired with a raw run just before it on the same sandbox, fresh parties
    each; the figure is the median ratio of ``overhead_repeats`` pairs per backend.
    """
    out: dict[str, Any] = {"raw": {}}
    start = 0
    with SandboxProcess(latency_ms=0.0) as sandbox:
        for backend in ("sqlite", "postgresql"):
            pairs = []
            for i in range(p.overhead_repeats):
                raw_parties = seed(sandbox.url, p.parties, start=start)
                since = sandbox.last_seq()
                raw_s = naive.run(sandbox.url, raw_parties, threads=p.concurrency)
                raw_rate = len(sandbox.calls(since)) / raw_s
                parties = seed(sandbox.url, p.parties, start=start + p.parties)
                start += 2 * p.parties
                if backend == "sqlite":
                    run = _engine(sandbox, parties, _sqlite(workdir, f"overhead-{i}"), p, workdir)
                else:
                    with scaleout.postgres_database(p.postgres_url) as url:
                        run = _engine(sandbox, parties, url, p, workdir)
                engine_rate = run.api_calls / run.seconds
                pairs.append(
                    {
                        "ratio": engine_rate / raw_rate,
                        "engine_calls_per_s": round(engine_rate, 1),
                        "raw_calls_per_s": round(raw_rate, 1),
                    }
                )
            out[f"overhead_ratio_{backend}"] = round(statistics.median(x["ratio"] for x in pairs), 3)
            out["raw"][backend] = [{**x, "ratio": round(x["ratio"], 3)} for x in pairs]
    return out


def scale_out(p: Params, workdir: Path) -> dict[str, Any]:
    """Case 4: PostgreSQL, N worker processes against one, each with its own fresh sandbox and database."""
    times: dict[int, float] = {}
    for workers in (1, p.scaleout_workers):
        with SandboxProcess(latency_ms=p.latency_ms) as sandbox, scaleout.postgres_database(p.postgres_url) as url:
            parties = seed(sandbox.url, p.scaleout_parties)
            folder = workdir / f"scaleout-{workers}"
            folder.mkdir()
            times[workers] = scaleout.run_workers(
                sandbox.url,
                parties,
                db_url=url,
                workers=workers,
                concurrency=p.scaleout_concurrency,
                workdir=folder,
            )
    return {
        "scaleout_4": round(times[1] / times[p.scaleout_workers], 2),
        "raw": {"time_1_s": round(times[1], 2), f"time_{p.scaleout_workers}_s": round(times[p.scaleout_workers], 2)},
    }


def sizes(p: Params, workdir: Path) -> dict[str, Any]:
    """Case 5: the big import, `status` on it, and the worker's memory growth."""
    big = size.import_and_status(p.import_rows, workdir, status_runs=p.status_runs)
    low, high = p.rss_checkpoints
    with SandboxProcess(latency_ms=0.0, call_log_limit=1000) as sandbox:
        parties = seed(sandbox.url, high)
        memory = size.worker_memory(sandbox.url, parties, p.rss_checkpoints, workdir)
    rss = memory["rss_mb"]
    return {
        "import_100k_s": big["import_s"],
        "import_100k_peak_mb": big["import_peak_mb"],
        "status_100k_s": big["status_s"],
        "worker_rss_growth": round(rss[str(high)] / rss[str(low)], 3),
        "raw": {"status_runs_s": big["status_runs_s"], "worker_rss_mb": rss, "worker_run_s": memory["seconds"]},
    }


CASES: dict[str, Callable[[Params, Path], dict[str, Any]]] = {
    "efficiency": efficiency_and_naive,
    "overhead": overhead,
    "scaleout": scale_out,
    "size": sizes,
}


def run_all(p: Params, *, only: list[str] | None = None, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the cases (all, or ``only``); the figures at the top level, the raw numbers under ``raw``."""
    results: dict[str, Any] = {"raw": {}}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="peppol-bench-") as tmp:
        for name, case in CASES.items():
            if only and name not in only:
                continue
            folder = Path(tmp) / name
            folder.mkdir()
            progress(f"bench: {name}…")
            t = time.perf_counter()
            figures = case(p, folder)
            results["raw"][name] = {**figures.pop("raw"), "case_s": round(time.perf_counter() - t, 1)}
            results.update(figures)
    results["raw"]["total_s"] = round(time.perf_counter() - started, 1)
    results["cores"] = os.cpu_count()
    results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    shown = make_url(p.postgres_url).render_as_string(hide_password=True)
    results["parameters"] = asdict(p) | {"postgres_url": shown}
    return results
