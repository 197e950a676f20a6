"""The worker's resident memory as migrations complete: ``python -m bench.memory LOW,HIGH`` runs
one worker as a service (in a process of its own, so nothing else is in its heap) and prints a
JSON line with its RSS in MB when LOW and when HIGH migrations have completed; it stops at HIGH.

The parent imports the first LOW migrations before starting it and the rest once it reports
LOW, so the first figure is taken after LOW migrations ran start to end, not part-way through
a bigger batch (claims go oldest first, so a big batch completes all at once near its end).
"""

from __future__ import annotations

import json
import os
import sys
import threading

from migration_engine.cli.serving import serving_switch_interval
from migration_engine.engine.runtime import Runtime
from migration_engine.machine import State
from migration_engine.settings import load_settings
from migration_engine.store import MigrationRecord


def rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as fh:
        resident_pages = int(fh.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def main(argv: list[str]) -> int:
    """argv: LOW,HIGH; the engine's settings come from the environment."""
    low, high = sorted(int(n) for n in argv[0].split(","))
    rt = Runtime(load_settings(env=dict(os.environ)))
    stop = threading.Event()
    lock = threading.Lock()
    completed = 0

    def on_applied(record: MigrationRecord) -> None:
        nonlocal completed
        if record.state is not State.COMPLETED:
            return
        with lock:
            completed += 1
            if completed in (low, high):
                print(json.dumps({"completed": completed, "rss_mb": round(rss_mb(), 1)}), flush=True)
            if completed >= high:
                stop.set()

    try:
        with serving_switch_interval():
            rt.worker(on_applied=on_applied).run(until_idle=False, stop=stop)
    finally:
        rt.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
