"""One engine run in this process: import the batch, run the worker until idle, time it.

The worker runs as `peppol-migrate run --until-idle` does (``Worker.run(until_idle=True)``,
with the switch interval the CLI serves with, ``serving_switch_interval``); only the wiring is
in-process. Calls are counted from the sandbox's own log; the figures divide by the calls
the state tables need (``MIN_CALLS``), so a wasted call costs the engine and never raises the
bar it is measured against. The CPU time is this process's during the run only: the sandbox
is a process of its own, and so is PostgreSQL when it is the store.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.parties import FROM, TO, Party, engine_env, write_batch
from bench.sandbox_proc import SandboxProcess
from migration_engine.backoffice.importer import import_file
from migration_engine.cli.serving import serving_switch_interval
from migration_engine.engine.runtime import Runtime
from migration_engine.settings import load_settings

# The fewest PSB calls a migration needs with the default profile (one capability PUT, one
# hook, one user, a business card) when every poll finds what it waits for the first time.
# To eConnect: PUT key, one takeover poll, PUT capabilities, GET hooks (they are matched by
# name), PUT hook, PUT user party, PUT enroll, one verification lookup.
# From eConnect: GET prepareToMigrate, one takeover poll, GET config (gone?), GET hooks,
# DELETE user party; the key's handoff goes to the new provider, not to the PSB.
MIN_CALLS = {TO: 8, FROM: 5}


def min_calls(parties: list[Party]) -> int:
    """The fewest PSB calls that migrate ``parties``."""
    return sum(MIN_CALLS[p.direction] for p in parties)


def littles_law_s(parties: list[Party], *, latency_ms: float, concurrency: int) -> float:
    """The shortest possible run: the fewest calls, each taking ``latency_ms``, ``concurrency`` at a time."""
    return min_calls(parties) * latency_ms / 1000 / concurrency


@dataclass
class EngineRun:
    seconds: float
    cpu_s: float  # this process's CPU time during the run (every thread: steps, recorder, SQLite)
    api_calls: int  # measured, from the sandbox's log
    min_calls: int  # the fewest the state tables need for these parties
    calls_by_direction: dict[str, float]  # mean API calls per migration
    states: dict[str, int]
    steps: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def all_completed(self) -> bool:
        return set(self.states) == {"completed"}


def per_direction(calls: list[dict[str, Any]], parties: list[Party]) -> dict[str, float]:
    direction = {p.party_id: p.direction for p in parties}
    per_party = Counter(c["partyId"] for c in calls if c.get("partyId") in direction)
    out: dict[str, float] = {}
    for d in (TO, FROM):
        mine = [per_party[p.party_id] for p in parties if p.direction == d]
        out[d] = round(sum(mine) / len(mine), 3) if mine else 0.0
    return out


def run_engine(
    sandbox: SandboxProcess, parties: list[Party], *, db_url: str, concurrency: int, workdir: Path
) -> EngineRun:
    """Import ``parties`` into ``db_url`` (an empty database), then run one worker until idle."""
    batch = write_batch(workdir / "batch.csv", parties)
    rt = Runtime(load_settings(env=engine_env(db_url, sandbox.url, concurrency=concurrency)))
    try:
        rt.store.upgrade()
        import_file(rt, path=batch, batch_name="bench", dry_run=False, actor="bench")
        since = sandbox.last_seq()
        worker = rt.worker()
        with serving_switch_interval():
            started, cpu_started = time.perf_counter(), time.process_time()
            worker.run(until_idle=True)
            seconds, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
        calls = sandbox.calls(since)
        states: Counter[str] = Counter()
        for _, state, n in rt.store.counts(batch_name="bench"):
            states[state.value] += n
        return EngineRun(
            seconds=seconds,
            cpu_s=cpu_s,
            api_calls=len(calls),
            min_calls=min_calls(parties),
            calls_by_direction=per_direction(calls, parties),
            states=dict(states),
            steps=worker.steps_run,
        )
    finally:
        rt.close()
