"""Size: the import of a big batch file and `status` on the result, both through the CLI as a
user runs them; and the worker's memory after few versus many completed migrations."""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.parties import FROM, PROVIDER, TO, Party, engine_env, party_id, write_batch
from migration_engine.backoffice.importer import import_file
from migration_engine.engine.runtime import Runtime
from migration_engine.keys import generate_key
from migration_engine.settings import load_settings

CLI = [sys.executable, "-m", "migration_engine.cli"]


def write_big_batch(path: Path, rows: int) -> Path:
    """Half to eConnect with a key, half from it, as one CSV."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["party_id", "direction", "migration_key", "profile", "name", "new_provider"])
        for i in range(rows):
            pid = party_id(i)
            if i % 2 == 0:
                writer.writerow([pid, TO, generate_key(), "default", f"Customer {i}", ""])
            else:
                writer.writerow([pid, FROM, "", "", f"Customer {i}", PROVIDER])
    path.chmod(0o600)
    return path


def _timed_cli(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run the CLI; (seconds, peak resident MB of the process)."""
    started = time.perf_counter()
    proc = subprocess.Popen([*CLI, *args], env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    assert proc.stderr is not None
    errors = proc.stderr.read().decode("utf-8", "replace")
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"peppol-migrate {' '.join(args)} failed ({proc.returncode}): {errors[-2000:]}")
    return seconds, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def import_and_status(rows: int, workdir: Path, *, status_runs: int = 3) -> dict[str, Any]:
    """`import` of ``rows`` rows into a fresh SQLite database, then `status` (median of runs)."""
    env = engine_env(f"sqlite:///{workdir / 'big.db'}", "http://127.0.0.1:9", concurrency=8)
    batch = write_big_batch(workdir / "big.csv", rows)
    _timed_cli(["db", "upgrade"], env)
    import_s, import_mb = _timed_cli(["import", str(batch), "--batch", "big"], env)
    status_times = [_timed_cli(["status"], env)[0] for _ in range(status_runs)]
    return {
        "import_s": round(import_s, 2),
        "import_peak_mb": round(import_mb, 1),
        "status_s": round(statistics.median(status_times), 3),
        "status_runs_s": [round(t, 3) for t in status_times],
    }


def worker_memory(
    sandbox_url: str, parties: list[Party], checkpoints: tuple[int, int], workdir: Path
) -> dict[str, Any]:
    """One worker process (SQLite) over ``parties``: its RSS after the first ``low`` migrations
    and after all ``high``; the rest are imported while it runs, once it reports ``low``."""
    low, high = checkpoints
    env = engine_env(f"sqlite:///{workdir / 'memory.db'}", sandbox_url, concurrency=32)
    rt = Runtime(load_settings(env=env))
    try:
        rt.store.upgrade()

        def load(name: str, chunk: list[Party]) -> None:
            batch = write_batch(workdir / f"{name}.csv", chunk)
            import_file(rt, path=batch, batch_name=name, dry_run=False, actor="bench")

        load("first", parties[:low])
        started = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, "-m", "bench.memory", f"{low},{high}"],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        with child.stdout:
            seen = [json.loads(child.stdout.readline())]
            load("rest", parties[low:high])
            seen.append(json.loads(child.stdout.readline()))
        if child.wait() != 0:
            raise RuntimeError(f"the memory worker failed (exit code {child.returncode})")
    finally:
        rt.close()
    return {
        "rss_mb": {str(s["completed"]): s["rss_mb"] for s in seen},
        "seconds": round(time.perf_counter() - started, 1),
    }
