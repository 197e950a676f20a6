"""How quickly the command line answers: ``--help``, ``--version`` and ``status`` on an empty
database, each a fresh process of the installed ``peppol-migrate`` script, as a user runs it.

A command imports what it needs when it runs, so help and the version load neither
SQLAlchemy, httpx, rich nor the sandbox; ``status`` loads the store and the status view but
not the worker or the PSB client. The figure is the median wall-clock time of a few runs
(the first run, which fills the operating system's file cache, is not counted).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SCRIPT = Path(sys.executable).with_name("peppol-migrate")


def _clean_env(db_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEPPOL_MIGRATE_")}
    env["PEPPOL_MIGRATE_DATABASE__URL"] = db_url
    return env


def _median_s(args: list[str], env: dict[str, str], cwd: Path, runs: int) -> float:
    times = []
    for i in range(runs + 1):
        started = time.perf_counter()
        done = subprocess.run([str(SCRIPT), *args], env=env, cwd=cwd, capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"peppol-migrate {' '.join(args)} failed ({done.returncode}): {done.stderr[-500:]}")
        if i:  # the first run warms the file cache
            times.append(elapsed)
    return statistics.median(times)


def measure(workdir: Path, *, runs: int = 7) -> dict[str, Any]:
    """The median seconds of ``--help``, ``--version`` and ``status`` (empty SQLite database)."""
    env = _clean_env(f"sqlite:///{workdir / 'empty.db'}")
    upgrade = subprocess.run([str(SCRIPT), "db", "upgrade"], env=env, cwd=workdir, capture_output=True, text=True)
    if upgrade.returncode != 0:
        raise RuntimeError(f"peppol-migrate db upgrade failed: {upgrade.stderr[-500:]}")
    return {
        "help_s": _median_s(["--help"], env, workdir, runs),
        "version_s": _median_s(["--version"], env, workdir, runs),
        "status_s": _median_s(["status"], env, workdir, runs),
    }
