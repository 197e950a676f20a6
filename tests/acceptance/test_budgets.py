"""The PSB budget holds across worker processes on PostgreSQL: three `peppol-migrate run`
workers share one database and `budgets.psb_per_s = 20`, with far more work than 20 calls a
second can do. The sandbox logs every PSB API call with its arrival time; over a minute of the
run (after a warm-up) the calls are within 10 % of the budget, and no 10 s stretch of it goes
over the budget by more than 10 % plus a block per worker. Each worker ran steps, so the
budget was shared, not used by one.

Takes about 80 s of real time. Run with ``-rP`` (or ``-s``) to see the figures line.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest

from migration_engine.clock import SystemClock
from migration_engine.limiter import block_size
from migration_engine.sandbox import SandboxConfig, SandboxServer
from migration_engine.store import Store
from tests.support import TEST_AUDIT_KEY, engine_env, kvk, seed_batch
from tests.support.durability import Transcript

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

WORKERS = 3
BUDGET = 20.0  # PSB calls a second, for all three workers together
PARTIES = 800  # ~4,000 PSB calls on their happy paths: more than the run lasts at the budget
WARM_UP_S = 10.0  # the workers start, take their tokens, claim
MINUTE_S = 60.0
SUB_WINDOW_S = 10.0


def arrival(call: dict[str, object]) -> datetime:
    return datetime.fromisoformat(str(call["at"]))


def wait_until_calls_span(model, procs: list[subprocess.Popen[bytes]], span_s: float, timeout_s: float) -> None:
    """Wait until the sandbox's call log spans ``span_s`` seconds, each worker still running.
    The bounded waits are on the processes themselves (one exiting is a failure)."""
    deadline = time.monotonic() + timeout_s
    while True:
        calls = model.calls()
        if calls and (arrival(calls[-1]) - arrival(calls[0])).total_seconds() >= span_s:
            return
        for proc in procs:
            assert proc.poll() is None, f"a worker exited early with {proc.returncode}"
        assert time.monotonic() < deadline, f"the calls did not span {span_s:.0f} s within {timeout_s:.0f} s"
        with contextlib.suppress(subprocess.TimeoutExpired):
            procs[0].wait(timeout=0.5)


def test_three_workers_hold_the_psb_budget_within_ten_percent(tmp_path, postgres_database):
    db_url = postgres_database.render_as_string(hide_password=False)  # a fresh database
    inbound = [kvk(20000 + i) for i in range(PARTIES // 2)]
    outbound = [kvk(30000 + i) for i in range(PARTIES // 2)]
    with SandboxServer(SandboxConfig(seed=13)) as sandbox:
        seed_batch(sandbox.model, tmp_path / "b.csv", inbound=inbound, outbound=outbound)
        env = engine_env(
            db_url,
            sandbox.url,
            PEPPOL_MIGRATE_BUDGETS__PSB_PER_S=f"{BUDGET:g}",
            PEPPOL_MIGRATE_PSB__MAX_RPS="0",  # no per-process limit: the shared budget alone
            PEPPOL_MIGRATE_WORKER__LEASE_S="30",
            PEPPOL_MIGRATE_WORKER__POLL_INTERVAL_S="0.05",
            PEPPOL_MIGRATE_TAKEOVER__POLL_S="0.5",
            PEPPOL_MIGRATE_TAKEOVER__POLL_MAX_S="1",
        )
        out = Transcript(tmp_path)
        assert out.cli("db", "upgrade", env=env).returncode == 0
        assert out.cli("import", str(tmp_path / "b.csv"), "--batch", "paced", env=env).returncode == 0
        procs = [out.spawn("run", env=env) for _ in range(WORKERS)]
        try:
            wait_until_calls_span(sandbox.model, procs, WARM_UP_S + MINUTE_S + 2, timeout_s=240)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            codes = [proc.wait(timeout=120) for proc in procs]
        assert codes == [0] * WORKERS, [t[-2000:] for t in out.everything().values()]
        calls = sandbox.model.calls()

    times = sorted(arrival(c) for c in calls)
    start = times[0] + timedelta(seconds=WARM_UP_S)
    minute = [t for t in times if start <= t < start + timedelta(seconds=MINUTE_S)]
    rate = len(minute) / MINUTE_S
    assert abs(rate - BUDGET) <= 0.1 * BUDGET, f"{rate:.2f} PSB calls a second over the minute, budget {BUDGET:g}"

    burst = WORKERS * block_size(BUDGET)  # a block of slots per worker
    allowed = 1.1 * BUDGET * SUB_WINDOW_S + burst
    busiest = 0
    for step in range(int(MINUTE_S - SUB_WINDOW_S) + 1):
        lo = start + timedelta(seconds=step)
        hi = lo + timedelta(seconds=SUB_WINDOW_S)
        busiest = max(busiest, sum(1 for t in minute if lo <= t < hi))
    assert busiest <= allowed, f"{busiest} calls in a {SUB_WINDOW_S:g} s stretch (at most {allowed:g})"

    store = Store(db_url, clock=SystemClock(), audit_key=TEST_AUDIT_KEY)
    try:
        workers = store.workers(since=datetime.now(UTC) - timedelta(hours=1))
        rows = {row.name: row for row in store.budget_rows()}
    finally:
        store.close()
    assert len(workers) == WORKERS and all(w.steps_run > 0 for w in workers), workers
    assert rows["psb"].rate_per_s == BUDGET and rows["psb"].reserved >= len(calls)
    steps = ", ".join(str(w.steps_run) for w in sorted(workers, key=lambda w: w.worker_id))
    print(
        f"\nFIGURES budgets: {WORKERS} workers on PostgreSQL, budgets.psb_per_s = {BUDGET:g}: "
        f"{len(minute)} PSB calls in the measured minute ({rate:.2f}/s, {rate / BUDGET - 1:+.1%} of the budget), "
        f"busiest {SUB_WINDOW_S:g} s: {busiest} calls ({busiest / SUB_WINDOW_S:.1f}/s); steps per worker {steps}; "
        f"{rows['psb'].reserved} slots reserved for {len(calls)} calls"
    )
