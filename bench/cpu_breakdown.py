"""``python -m bench.cpu_breakdown [PARTIES]``: where the engine's CPU per call goes.

The benchmark's ``cpu_per_call_ratio`` says how much more CPU the engine spends per PSB call
than a bare httpx loop; this says on what. One engine run (50 ms latency, concurrency 32,
SQLite, as the efficiency case) with the CPU time of the calling thread (``time.thread_time``)
added up around the engine's main operations: the PSB exchange itself, the rest of a step
(its logic, building the change, the lease fence before a call that must not be made twice),
recording outcomes (the compare-and-set with its audit events, group-committed), claiming,
and renewing leases. Each is printed per PSB call the state tables need, beside the same
run's total and a bare httpx loop's total on the same sandbox.

A diagnostic, not a figure with a target: the wrapping is done on the classes for this
process only, and it adds a little CPU of its own.
"""

from __future__ import annotations

import functools
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import naive
from bench.engine import min_calls, run_engine
from bench.parties import seed
from bench.sandbox_proc import SandboxProcess
from migration_engine.engine.loop import Loop
from migration_engine.engine.worker import Worker
from migration_engine.psb.client import PsbClient
from migration_engine.store import Store

# (class, method, label): what is timed. decide includes the PSB exchange and the fence.
TIMED: tuple[tuple[type, str, str], ...] = (
    (Worker, "decide", "step (decide), all of it"),
    (PsbClient, "_exchange", "  of which: PSB exchange"),
    (Store, "renew_lease", "  of which: lease fence / renewal"),
    (Store, "apply_many", "recording (CAS + audit, group commit)"),
    (Loop, "_claim_job", "claim job"),
    (Store, "claim_due", "  of which: claim_due"),
)


@contextmanager
def timed(spent: dict[str, float], calls: Counter[str]) -> Iterator[None]:
    """Wrap the ``TIMED`` methods so that each adds its thread's CPU time to ``spent``."""
    lock = threading.Lock()
    originals: list[tuple[type, str, Callable[..., Any]]] = []
    for cls, name, label in TIMED:
        original = getattr(cls, name)
        originals.append((cls, name, original))

        def wrapper(*args: Any, _original: Callable[..., Any] = original, _label: str = label, **kw: Any) -> Any:
            started = time.thread_time()
            try:
                return _original(*args, **kw)
            finally:
                used = time.thread_time() - started
                with lock:
                    spent[_label] += used
                    calls[_label] += 1

        setattr(cls, name, functools.wraps(original)(wrapper))
    try:
        yield
    finally:
        for cls, name, original in originals:
            setattr(cls, name, original)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    parties_n = int(args[0]) if args else 600
    spent: dict[str, float] = {label: 0.0 for _, _, label in TIMED}
    calls: Counter[str] = Counter()
    workdir = Path(tempfile.mkdtemp(prefix="peppol-cpu-"))
    with SandboxProcess(latency_ms=50.0) as sandbox:
        bare_parties = seed(sandbox.url, parties_n)
        parties = seed(sandbox.url, parties_n, start=parties_n)
        bare = naive.run(sandbox.url, bare_parties, threads=32)
        with timed(spent, calls):
            db_url = f"sqlite:///{workdir / 'cpu.db'}"
            run = run_engine(sandbox, parties, db_url=db_url, concurrency=32, workdir=workdir)
    per_call = 1000 / run.min_calls
    bare_ms = 1000 * bare.cpu_s / min_calls(bare_parties)
    print(f"{parties_n} parties each way at 50 ms, concurrency 32, SQLite; {run.min_calls} calls, {run.steps} steps")
    print(f"{'bare httpx loop, whole process':<40} {bare_ms:7.3f} ms CPU per call")
    engine_ms = run.cpu_s * per_call
    print(f"{'engine, whole process':<40} {engine_ms:7.3f} ms CPU per call  (ratio {engine_ms / bare_ms:.2f})")
    for _, _, label in TIMED:
        each = 1e6 * spent[label] / max(1, calls[label])
        print(f"{label:<40} {spent[label] * per_call:7.3f} ms per call  ({calls[label]} times, {each:.0f} us each)")
    return 0 if set(run.states) == {"completed"} else 1


if __name__ == "__main__":
    raise SystemExit(main())
