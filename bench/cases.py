"""The cases of the benchmark and their figures.

The repeated cases (efficiency, overhead, scale-out) run ``rounds`` times, interleaved, each
round with sandboxes, parties and databases of its own; every figure is the median of its
rounds, with the lowest and highest beside it. Within a round the two sides of a ratio run
back to back on the same sandbox, and the order alternates from round to round. The size
case runs once. Each case starts its own sandbox process.
"""

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
from bench import startup as cli_startup
from bench.engine import MIN_CALLS, EngineRun, littles_law_s, min_calls, run_engine
from bench.parties import Party, seed
from bench.sandbox_proc import SandboxProcess


@dataclass(frozen=True)
class Params:
    """The sizes of one run (``FULL`` for `make bench`; ``QUICK`` for the smoke test)."""

    rounds: int = 3  # runs of each repeated case; each figure is the median of its rounds
    parties: int = 1000  # per engine run, and per bare httpx run, of the efficiency and overhead cases
    latency_ms: float = 50.0
    concurrency: int = 32
    naive_parties: int = 50  # the sequential script's sample, scaled to ``parties``
    scaleout_parties: int = 1500  # per setup
    scaleout_workers: int = 4
    scaleout_concurrency: int = 8  # per process; the single process runs at workers x this
    import_rows: int = 100_000
    rss_checkpoints: tuple[int, int] = (2000, 20_000)
    status_runs: int = 3  # `status` is timed this often; the median counts
    startup_runs: int = 7  # each command line timed this often (after one warm-up); the median counts
    postgres_url: str = scaleout.DEFAULT_POSTGRES_URL

    @property
    def scaleout_total(self) -> int:
        return self.scaleout_workers * self.scaleout_concurrency


FULL = Params()
QUICK = Params(
    rounds=2,
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
    startup_runs=1,
)

Case = Callable[[Params, Path, int], dict[str, Any]]  # (params, folder, round) -> figures and "raw"


def _sqlite(workdir: Path, name: str) -> str:
    return f"sqlite:///{workdir / name}.db"


def _engine(sandbox: SandboxProcess, parties: list[Party], db_url: str, p: Params, workdir: Path) -> EngineRun:
    run = run_engine(sandbox, parties, db_url=db_url, concurrency=p.concurrency, workdir=workdir)
    if not run.all_completed:
        raise RuntimeError(f"an engine run did not complete every migration: {run.states}")
    return run


def _raw(sandbox: SandboxProcess, parties: list[Party], p: Params) -> tuple[naive.LoopRun, int]:
    """The bare httpx loop at the engine's concurrency; (its run, the calls the sandbox saw)."""
    since = sandbox.last_seq()
    run = naive.run(sandbox.url, parties, threads=p.concurrency)
    return run, len(sandbox.calls(since))


def _pair(
    first_raw: bool, raw: Callable[[], tuple[naive.LoopRun, int]], engine: Callable[[], EngineRun]
) -> tuple[tuple[naive.LoopRun, int], EngineRun]:
    """Both sides of a ratio back to back, in the order given."""
    if first_raw:
        r = raw()
        return r, engine()
    e = engine()
    return raw(), e


def efficiency(p: Params, workdir: Path, i: int) -> dict[str, Any]:
    """At ``latency_ms`` and ``concurrency`` on SQLite: the engine and the bare httpx loop against
    Little's law, their CPU per call, and the sequential script on a sample of the same parties."""
    with SandboxProcess(latency_ms=p.latency_ms) as sandbox:
        raw_parties = seed(sandbox.url, p.parties)
        parties = seed(sandbox.url, p.parties, start=p.parties)
        sample = seed(sandbox.url, p.naive_parties, start=2 * p.parties)
        (raw, raw_calls), run = _pair(
            i % 2 == 0,
            lambda: _raw(sandbox, raw_parties, p),
            lambda: _engine(sandbox, parties, _sqlite(workdir, "efficiency"), p, workdir),
        )
        since = sandbox.last_seq()
        sequential = naive.run(sandbox.url, sample)
        sequential_calls = len(sandbox.calls(since))
    limit_s = littles_law_s(parties, latency_ms=p.latency_ms, concurrency=p.concurrency)
    raw_limit_s = littles_law_s(raw_parties, latency_ms=p.latency_ms, concurrency=p.concurrency)
    engine_cpu_per_call = run.cpu_s / run.min_calls
    raw_cpu_per_call = raw.cpu_s / min_calls(raw_parties)
    naive_s = sequential.seconds * p.parties / p.naive_parties
    return {
        "efficiency": limit_s / run.seconds,
        "raw_efficiency": raw_limit_s / raw.seconds,
        "cpu_per_call_ratio": engine_cpu_per_call / raw_cpu_per_call,
        "speedup_vs_naive": naive_s / run.seconds,
        "calls_per_migration": run.calls_by_direction,
        "raw": {
            "engine_s": round(run.seconds, 2),
            "engine_cpu_s": round(run.cpu_s, 2),
            "engine_calls": run.api_calls,
            "min_calls": run.min_calls,
            "limit_s": round(limit_s, 2),
            "steps": run.steps,
            "engine_cpu_ms_per_call": round(engine_cpu_per_call * 1000, 3),
            "raw_s": round(raw.seconds, 2),
            "raw_cpu_s": round(raw.cpu_s, 2),
            "raw_calls": raw_calls,
            "raw_cpu_ms_per_call": round(raw_cpu_per_call * 1000, 3),
            "raw_first": i % 2 == 0,
            "naive_sample_parties": p.naive_parties,
            "naive_sample_s": round(sequential.seconds, 2),
            "naive_sample_calls": sequential_calls,
            "naive_s_for_all_parties": round(naive_s, 1),
        },
    }


def overhead(p: Params, workdir: Path, i: int) -> dict[str, Any]:
    """At latency 0: the engine's useful calls per second over the bare httpx loop's, same concurrency,
    SQLite and PostgreSQL, each engine run next to a bare run on the same sandbox, fresh parties each."""
    out: dict[str, Any] = {"raw": {}}
    backends = ("sqlite", "postgresql") if i % 2 == 0 else ("postgresql", "sqlite")
    with SandboxProcess(latency_ms=0.0) as sandbox:
        for k, backend in enumerate(backends):
            raw_parties = seed(sandbox.url, p.parties, start=2 * k * p.parties)
            parties = seed(sandbox.url, p.parties, start=(2 * k + 1) * p.parties)

            def bare(raw_parties: list[Party] = raw_parties) -> tuple[naive.LoopRun, int]:
                return _raw(sandbox, raw_parties, p)

            def engine(backend: str = backend, parties: list[Party] = parties) -> EngineRun:
                if backend == "sqlite":
                    return _engine(sandbox, parties, _sqlite(workdir, "overhead"), p, workdir)
                with scaleout.postgres_database(p.postgres_url) as url:
                    return _engine(sandbox, parties, url, p, workdir)

            (raw, raw_calls), run = _pair((i + k) % 2 == 0, bare, engine)
            engine_rate = run.min_calls / run.seconds
            raw_rate = min_calls(raw_parties) / raw.seconds
            out[f"overhead_ratio_{backend}"] = engine_rate / raw_rate
            out["raw"][backend] = {
                "engine_calls_per_s": round(engine_rate, 1),
                "raw_calls_per_s": round(raw_rate, 1),
                "engine_calls": run.api_calls,
                "raw_calls": raw_calls,
                "min_calls": run.min_calls,
                "engine_cpu_ms_per_call": round(run.cpu_s / run.min_calls * 1000, 3),
                "raw_cpu_ms_per_call": round(raw.cpu_s / min_calls(raw_parties) * 1000, 3),
                "raw_first": (i + k) % 2 == 0,
            }
    return out


def scale_out(p: Params, workdir: Path, i: int) -> dict[str, Any]:
    """PostgreSQL at ``latency_ms``: ``scaleout_workers`` processes at ``scaleout_concurrency`` each
    against one process at their total, so both have the same calls in flight; each setup also
    against Little's law at that total. Every setup gets a fresh database and parties."""
    total = p.scaleout_total
    setups = [(1, total), (p.scaleout_workers, p.scaleout_concurrency)]
    if i % 2:
        setups.reverse()
    times: dict[int, float] = {}
    limit_s = 0.0
    with SandboxProcess(latency_ms=p.latency_ms) as sandbox:
        for k, (workers, concurrency) in enumerate(setups):
            parties = seed(sandbox.url, p.scaleout_parties, start=k * p.scaleout_parties)
            limit_s = littles_law_s(parties, latency_ms=p.latency_ms, concurrency=total)
            folder = workdir / f"{workers}x{concurrency}"
            folder.mkdir()
            with scaleout.postgres_database(p.postgres_url) as url:
                times[workers] = scaleout.run_workers(
                    sandbox.url, parties, db_url=url, workers=workers, concurrency=concurrency, workdir=folder
                )
    one, many = times[1], times[p.scaleout_workers]
    return {
        "scaleout_speedup": one / many,
        "scaleout_efficiency_1": limit_s / one,
        "scaleout_efficiency_n": limit_s / many,
        "raw": {"time_1_s": round(one, 2), "time_n_s": round(many, 2), "limit_s": round(limit_s, 2)},
    }


def sizes(p: Params, workdir: Path, i: int) -> dict[str, Any]:
    """The big import, `status` on it, and the worker's memory growth (run once)."""
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
        "worker_rss_growth": rss[str(high)] / rss[str(low)],
        "raw": {"status_runs_s": big["status_runs_s"], "worker_rss_mb": rss, "worker_run_s": memory["seconds"]},
    }


def startup(p: Params, workdir: Path, i: int) -> dict[str, Any]:
    """How quickly the installed command answers (run once): help, version, status."""
    times = cli_startup.measure(workdir, runs=p.startup_runs)
    return {
        "cli_startup_s": max(times["help_s"], times["version_s"]),
        "cli_status_empty_s": times["status_s"],
        "raw": {k: round(v, 3) for k, v in times.items()},
    }


CASES: dict[str, Case] = {
    "efficiency": efficiency,
    "overhead": overhead,
    "scaleout": scale_out,
    "size": sizes,
    "startup": startup,
}
REPEATED = ("efficiency", "overhead", "scaleout")


def _spread(values: list[float]) -> dict[str, Any]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "runs": [round(v, 3) for v in values],
    }


def run_all(p: Params, *, only: list[str] | None = None, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the cases (all, or ``only``): the repeated ones ``rounds`` times, interleaved, then the rest.

    The figures (medians) are at the top level, their median, min, max and runs under ``spread``,
    the raw numbers of every round under ``raw``.
    """
    chosen = [name for name in CASES if not only or name in only]
    plan = [(i, name) for i in range(p.rounds) for name in chosen if name in REPEATED]
    plan += [(0, name) for name in chosen if name not in REPEATED]
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in chosen}
    case_s = dict.fromkeys(chosen, 0.0)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="peppol-bench-") as tmp:
        for i, name in plan:
            folder = Path(tmp) / f"{name}-{i}"
            folder.mkdir()
            which = f"round {i + 1} of {p.rounds}" if name in REPEATED else "once"
            progress(f"bench: {name}, {which}…")
            t = time.perf_counter()
            rounds[name].append(CASES[name](p, folder, i))
            case_s[name] += time.perf_counter() - t
    results: dict[str, Any] = {"raw": {}, "spread": {}}
    for name, runs in rounds.items():
        results["raw"][name] = {"rounds": [r.pop("raw") for r in runs], "case_s": round(case_s[name], 1)}
        measured = [r.pop("calls_per_migration") for r in runs if "calls_per_migration" in r]
        if measured:  # the worst round counts
            results["calls_per_migration"] = {
                d: {"measured": max(m[d] for m in measured), "minimum": MIN_CALLS[d]} for d in MIN_CALLS
            }
        for key in runs[0]:
            spread = _spread([float(r[key]) for r in runs])
            results[key] = spread["median"]
            if name in REPEATED:
                results["spread"][key] = spread
    results["raw"]["total_s"] = round(time.perf_counter() - started, 1)
    results["cores"] = os.cpu_count()
    results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    shown = make_url(p.postgres_url).render_as_string(hide_password=True)
    results["parameters"] = asdict(p) | {"postgres_url": shown, "scaleout_total": p.scaleout_total}
    return results
