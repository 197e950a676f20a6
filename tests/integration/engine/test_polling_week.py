"""Patient polls over a simulated week: the real worker loop (``Worker.run``) on a ManualClock,
the real sandbox over loopback with its fault injection, a real store.

- A week of 15-minute polls with 2 % transient PSB errors (1 % 500/503, 1 % dropped
  connections; fixed seed): the odd error never adds up to a give-up, so no party ends in
  needs_attention; outbound parties complete once their new provider uses the key (after six
  days), inbound ones once the DNS has caught up with eConnect (after half a day).
- A real outage while parties poll: ``retry.max_attempts`` failures in a row, and the party is
  in needs_attention with the PSB's error as its last error.

The week runs on SQLite only: about three thousand steps, each its own transaction, take a few
seconds there; the loop and the store are the same on PostgreSQL (the outage runs on both).
Nothing here waits in real time for simulated time: the loop skips the clock when idle.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta

from migration_engine.backoffice.importer import import_file
from migration_engine.engine.runtime import Runtime
from migration_engine.machine import State
from migration_engine.sandbox import SandboxConfig, SandboxServer
from tests.support import engine_settings, kvk, seed_batch

DAY = 24 * 3600.0
POLL_S = 15 * 60  # takeover.poll_s and poll_max_s: one poll every 15 minutes
PROVIDER_TAKES_S = 6 * DAY  # the new provider uses the key six days after receiving it
DNS_LAGS_S = DAY / 2  # the SML's DNS shows a change half a day late
REAL_S = 45  # real seconds a run may take (it takes a fraction of that)


def runtime(tmp_path, sandbox, db_url, clock, *, outbound=(), inbound=(), **env) -> Runtime:
    seed_batch(sandbox.model, tmp_path / "b.csv", outbound=outbound, inbound=inbound)
    env = {
        "PEPPOL_MIGRATE_TAKEOVER__POLL_S": str(POLL_S),
        "PEPPOL_MIGRATE_TAKEOVER__POLL_MAX_S": str(POLL_S),
        **env,
    }
    rt = Runtime(engine_settings(db_url, sandbox.url, **env), clock=clock)
    rt.store.upgrade()
    import_file(rt, path=tmp_path / "b.csv", batch_name="b", dry_run=False, actor="test")
    return rt


def timed_run(rt: Runtime, worker_id: str, *, until_idle: bool = False, until_settled: bool = False) -> float:
    """One real ``Worker.run``; the real seconds it took."""
    began = time.monotonic()
    rt.worker(worker_id=worker_id).run(until_idle=until_idle, until_settled=until_settled)
    return time.monotonic() - began


def errors_of(rt: Runtime, migration_id: int) -> list[int]:
    """The attempt numbers of a migration's transient errors, in order."""
    return [int(e.detail["attempt"]) for e in rt.store.events(migration_id) if e.kind == "error"]


def test_a_week_of_polls_with_two_percent_errors_leaves_no_party_needing_attention(tmp_path, clock):
    config = SandboxConfig(
        takeover_delay_s=PROVIDER_TAKES_S,
        propagation_delay_s=DNS_LAGS_S,
        error_rate=0.01,
        drop_rate=0.01,
        seed=20260105,
    )
    outbound = [kvk(i) for i in range(3)]
    inbound = [kvk(100 + i) for i in range(2)]
    with SandboxServer(config, clock=clock) as sandbox:
        db_url = f"sqlite:///{tmp_path / 'week.db'}"
        rt = runtime(tmp_path, sandbox, db_url, clock, outbound=outbound, inbound=inbound)
        start = clock.now()
        took = timed_run(rt, "worker-week", until_idle=True)

        records = list(rt.store.list_migrations())
        assert Counter(r.state for r in records) == {State.COMPLETED: len(outbound) + len(inbound)}
        # The outbound parties waited for their provider, polling every 15 minutes all along.
        assert clock.now() - start >= timedelta(seconds=PROVIDER_TAKES_S + DNS_LAGS_S)
        assert clock.now() - start < timedelta(hours=rt.settings.keys.ttl_h)
        polls = {
            r.party_id: sum(c["path"].endswith("/deliveryOption") for c in sandbox.model.calls(r.party_id))
            for r in records
        }
        assert all(polls[p] >= (PROVIDER_TAKES_S + DNS_LAGS_S) / POLL_S for p in outbound), polls
        assert all(polls[p] >= DNS_LAGS_S / POLL_S for p in inbound), polls
        # The faults did hit: dozens of transient errors, each retried and forgotten at the next
        # successful poll, none of them adding up towards retry.max_attempts.
        faults = Counter(c["fault"] for c in sandbox.model.calls() if c["fault"])
        assert faults["error"] >= 10 and faults["dropped_before"] + faults["dropped_after"] >= 10, faults
        attempts = [a for r in records for a in errors_of(rt, r.id)]
        assert len(attempts) >= 20 and max(attempts) < rt.settings.retry.max_attempts - 1
        assert took < REAL_S, f"a simulated week took {took:.1f} real seconds"
        rt.close()


def test_an_outage_longer_than_max_attempts_puts_the_polling_party_in_needs_attention(tmp_path, db_url, clock):
    config = SandboxConfig(takeover_delay_s=PROVIDER_TAKES_S, seed=7)
    parties = [kvk(200), kvk(201)]
    with SandboxServer(config, clock=clock) as sandbox:
        rt = runtime(tmp_path, sandbox, db_url, clock, outbound=parties)
        timed_run(rt, "worker-1", until_idle=False, until_settled=True)  # the keys are handed off: both poll now
        assert {r.state for r in rt.store.list_migrations()} == {State.KEY_DELIVERED}

        sandbox.faults.update({"errorRate": 1.0})  # the PSB is down: every call 500 or 503
        outage_from = clock.now()
        took = timed_run(rt, "worker-2", until_idle=True)

        max_attempts = rt.settings.retry.max_attempts
        for record in rt.store.list_migrations():
            assert record.state is State.NEEDS_ATTENTION and record.failed_state is State.KEY_DELIVERED
            assert record.last_error_code in {"API500", "API503"}
            assert f"gave up after {max_attempts} attempts" in (record.last_error or "")
            assert "temporarily unavailable" in (record.last_error or "")  # the PSB's own words
            assert errors_of(rt, record.id) == list(range(1, max_attempts))  # in a row, none forgotten
            calls = sandbox.model.calls(record.party_id)
            during = [c for c in calls if c["fault"] == "error"]
            assert len(during) == max_attempts
        # The outage, not the takeover deadline, ended the wait: days before the key's end.
        assert clock.now() - outage_from < timedelta(hours=1)
        assert took < REAL_S
        rt.close()
