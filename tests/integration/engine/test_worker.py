"""Leases, late results, the circuit breaker and the key-encryption key, through the real
worker, store (SQLite and PostgreSQL) and sandbox, on one ManualClock.

A "slow step" is the real step held at its start until the test releases it, so the test
decides exactly how much (manual) time passes while it runs.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from datetime import datetime, timedelta

import pytest

from migration_engine.backoffice import overview
from migration_engine.backoffice.importer import import_file
from migration_engine.cli import status_view
from migration_engine.engine import worker as worker_module
from migration_engine.engine.runtime import Runtime
from migration_engine.engine.steps import step_for
from migration_engine.errors import SecretError
from migration_engine.machine import State
from migration_engine.sandbox import SandboxConfig, SandboxServer
from migration_engine.store import Store
from tests.support import engine_settings, kvk, seed_batch

LEASE_S = 6.0


class SlowFirstStep:
    """Wraps ``step_for``: the first step run waits for ``release``, later ones run at once."""

    def __init__(self, real):
        self.real = real
        self.started = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._taken = False

    def __call__(self, direction, state):
        step = self.real(direction, state)

        def slow(ctx, record):
            with self._lock:
                first, self._taken = not self._taken, True
            if first:
                self.started.set()
                assert self.release.wait(30), "the test never released the slow step"
            return step(ctx, record)

        return slow


class Applied:
    """Counts the worker's applied changes (``on_applied``) and waits for them, without sleeping."""

    def __init__(self):
        self.count = 0
        self._cond = threading.Condition()

    def __call__(self, record):
        with self._cond:
            self.count += 1
            self._cond.notify_all()

    def wait_for(self, n):
        with self._cond:
            assert self._cond.wait_for(lambda: self.count >= n, timeout=30), f"{self.count} of {n} applied"


def migrate(tmp_path, sandbox, db_url, clock, *, outbound=(), inbound=(), **env) -> Runtime:
    """Seed the parties, import them (handoff manual: outbound stops in key_issued)."""
    seed_batch(sandbox.model, tmp_path / "b.csv", inbound=inbound, outbound=outbound)
    env = {"PEPPOL_MIGRATE_HANDOFF__MODE": "manual", "PEPPOL_MIGRATE_WORKER__LEASE_S": str(LEASE_S), **env}
    rt = Runtime(engine_settings(db_url, sandbox.url, **env), clock=clock)
    rt.store.upgrade()
    import_file(rt, path=tmp_path / "b.csv", batch_name="b", dry_run=False, actor="test")
    return rt


def moves(store, migration_id):
    return [
        (e.actor, e.from_state.value, e.to_state.value) for e in store.events(migration_id) if e.kind == "transition"
    ]


@pytest.fixture
def slow(monkeypatch):
    wrapper = SlowFirstStep(step_for)
    monkeypatch.setattr(worker_module, "step_for", wrapper)  # the name the worker looks up
    return wrapper


def test_a_slow_step_renews_its_lease_and_keeps_its_row(tmp_path, sandbox, db_url, clock, slow):
    rt = migrate(tmp_path, sandbox, db_url, clock, outbound=[kvk(1)])
    other = Store(db_url, clock=clock)  # another worker process's view of the database
    a = rt.worker(worker_id="worker-a")
    assert a.tick() == 1 and slow.started.wait(30)
    for _ in range(6):
        clock.advance(LEASE_S * 2 / 3)  # four leases' worth in all, renewed as the renew job does
        a.renew_leases()
        assert other.claim_due(worker_id="worker-b", limit=5, lease_s=LEASE_S) == []
    slow.release.set()
    a.close()

    [record] = rt.store.find_party(kvk(1))
    assert record.state is State.KEY_ISSUED and record.lease_owner is None
    assert a.stale_discarded == 0
    assert moves(rt.store, record.id) == [("worker-a", "requested", "key_issued")]
    [shown] = overview.workers(rt.store, now=clock.now())
    assert shown["worker_id"] == "worker-a" and shown["stopped_at"] and not shown["alive"]
    other.close()
    rt.close()


def test_a_late_result_after_the_lease_ran_out_is_discarded_and_logged(tmp_path, sandbox, db_url, clock, slow, caplog):
    caplog.set_level(logging.INFO, logger="migration_engine")
    rt = migrate(tmp_path, sandbox, db_url, clock, outbound=[kvk(2)])
    a, b = rt.worker(worker_id="worker-a"), rt.worker(worker_id="worker-b")
    assert a.tick() == 1 and slow.started.wait(30)
    clock.advance(LEASE_S + 1)  # worker-a renews nothing (it is stuck, say): its lease runs out
    assert b.tick() == 1  # another worker re-claims the row and moves it
    b.close()
    a.renew_leases()
    slow.release.set()
    a.close()

    [record] = rt.store.find_party(kvk(2))
    assert record.state is State.KEY_ISSUED
    assert a.stale_discarded == 1
    assert moves(rt.store, record.id) == [("worker-b", "requested", "key_issued")]
    assert all(e.actor != "worker-a" for e in rt.store.events(record.id)), "the late result wrote nothing"
    logged = {(r.action, r.migration_id) for r in caplog.records if hasattr(r, "action") and hasattr(r, "migration_id")}
    assert {("lease_lost", record.id), ("stale_result", record.id)} <= logged
    # The late step stopped before prepareToMigrate (its lease was gone): the SML still holds
    # the key worker-b got and stored, so the new provider will be able to use it.
    assert [c["method"] for c in sandbox.model.calls(kvk(2))] == ["GET"]
    stored = rt.vault().decrypt(record.key_ciphertext or "", migration_id=record.id, party_id=record.party_id)
    assert stored == sandbox.model.party(kvk(2))["migration"]["key"]
    rt.close()


def test_a_401_after_a_new_token_opens_the_circuit_and_a_probe_closes_it(tmp_path, db_url, clock, caplog):
    """The API gateway refuses our subscription key: every call is 401, a fresh token changes
    nothing. The worker stops claiming instead of burning every party's attempts."""
    caplog.set_level(logging.INFO, logger="migration_engine")
    with SandboxServer(SandboxConfig(subscription_key="renewed-subscription"), clock=clock) as sandbox:
        parties = [kvk(10 + i) for i in range(10)]
        rt = migrate(
            tmp_path,
            sandbox,
            db_url,
            clock,
            outbound=parties,
            PEPPOL_MIGRATE_PSB__SUBSCRIPTION_KEY="lapsed-subscription",
            PEPPOL_MIGRATE_WORKER__CONCURRENCY="2",
        )
        applied = Applied()
        worker = rt.worker(worker_id="worker-a", on_applied=applied)
        claimed = worker.tick()
        applied.wait_for(claimed)
        assert worker.breaker.state == "open" and "HTTP 401" in worker.breaker.reason
        assert rt.store.work_summary().due_now == len(parties) - claimed
        assert worker.tick() == 0, "an open circuit claims nothing"
        called = {c["partyId"] for c in sandbox.model.calls()}
        assert len(called) == claimed < len(parties)
        assert all(c["status"] == 401 for c in sandbox.model.calls())
        assert any(r.getMessage().startswith("circuit open: claiming paused") for r in caplog.records)

        status = overview.status(rt.store, now=clock.now())
        [shown] = status["workers"]
        assert shown["alive"] and shown["circuit"] == "open" and "401" in shown["circuit_reason"]
        assert any("circuit open because HTTP 401" in line for line in status_view.status_lines(status))

        clock.advance(30)  # the cool-down: one probe, which fails too
        assert worker.tick() == 1
        applied.wait_for(claimed + 1)
        assert worker.breaker.state == "open"
        clock.advance(30)
        assert worker.tick() == 0, "a failed probe doubles the cool-down"

        # The subscription is renewed at the gateway: the key the worker sends is valid again.
        sandbox.model.config = dataclasses.replace(sandbox.model.config, subscription_key="lapsed-subscription")
        clock.advance(30)
        assert worker.tick() == 1
        applied.wait_for(claimed + 2)
        assert worker.breaker.state == "closed"
        assert overview.status(rt.store, now=clock.now())["workers"][0]["circuit"] == "closed"
        worker.run(until_idle=True)
        worker.close()

        records = list(rt.store.list_migrations())
        assert {r.state for r in records} == {State.KEY_ISSUED}
        errors = {r.party_id: sum(e.kind == "error" for e in rt.store.events(r.id)) for r in records}
        assert sum(errors.values()) == claimed + 1, "only the claimed parties and one probe tried"
        rt.close()


def test_a_refused_token_request_opens_the_circuit_without_showing_the_secret(tmp_path, sandbox, db_url, clock):
    rt = migrate(
        tmp_path,
        sandbox,
        db_url,
        clock,
        outbound=[kvk(30), kvk(31)],
        PEPPOL_MIGRATE_PSB__CLIENT_SECRET="wrong-secret-1234",
    )
    applied = Applied()
    worker = rt.worker(worker_id="worker-a", on_applied=applied)
    applied.wait_for(worker.tick())
    assert worker.breaker.state == "open" and "OAUTH01" in worker.breaker.reason
    assert worker.tick() == 0
    assert sandbox.model.calls() == []  # no token, no API call
    shown = overview.status(rt.store, now=clock.now())
    texts = [str(shown), *(str(e) for r in rt.store.list_migrations() for e in rt.store.events(r.id))]
    assert all("wrong-secret-1234" not in t and "sandbox-secret" not in t for t in texts)
    worker.close()
    rt.close()


def test_the_worker_refuses_a_missing_or_wrong_key_encryption_key(tmp_path, sandbox, db_url, clock):
    rt = migrate(tmp_path, sandbox, db_url, clock, inbound=[kvk(40)])  # its key is stored encrypted
    wrong = Runtime(
        engine_settings(db_url, sandbox.url, PEPPOL_MIGRATE_KEYS__ENCRYPTION_KEY="some-other-kek-0123456789"),
        clock=clock,
    )
    with pytest.raises(SecretError, match="PEPPOL_MIGRATE_KEYS__ENCRYPTION_KEY is not the key"):
        wrong.worker()
    missing = Runtime(engine_settings(db_url, sandbox.url, PEPPOL_MIGRATE_KEYS__ENCRYPTION_KEY=""), clock=clock)
    with pytest.raises(SecretError, match="no key-encryption key"):
        missing.worker()
    [record] = rt.store.find_party(kvk(40))
    assert record.state is State.REQUESTED and record.attempts == 0  # nothing ran
    for runtime in (rt, wrong, missing):
        runtime.close()


def test_transient_failures_back_off_past_retry_after_then_need_attention_with_the_last_error(tmp_path, db_url, clock):
    from migration_engine.backoffice import actions

    with SandboxServer(SandboxConfig(throttle_rate=1.0), clock=clock) as sandbox:  # every call: 429, Retry-After 1
        rt = migrate(tmp_path, sandbox, db_url, clock, outbound=[kvk(50)], PEPPOL_MIGRATE_RETRY__MAX_ATTEMPTS="4")
        rt.worker().run(until_idle=True)
        [record] = rt.store.find_party(kvk(50))
        assert record.state is State.NEEDS_ATTENTION and record.failed_state is State.REQUESTED
        assert record.last_error_code == "API429" and "gave up after 4 attempts" in (record.last_error or "")
        assert "throttling" in (record.last_error or "")  # the PSB's own message, for the operator
        errors = [e for e in rt.store.events(record.id) if e.kind == "error"]
        assert [e.detail["attempt"] for e in errors] == [1, 2, 3]
        for e in errors:  # never sooner than Retry-After, however small the backoff drawn
            assert datetime.fromisoformat(e.detail["retry_at"]) - e.at >= timedelta(seconds=1)
        assert len(sandbox.model.calls()) == 4

        sandbox.faults.update({"throttleRate": 0})  # the PSB recovers; an operator retries
        actions.operator_action(rt.store, rt.settings, record=record, action="retry", actor="operator:test")
        rt.worker().run(until_idle=True)
        [record] = rt.store.find_party(kvk(50))
        assert record.state is State.KEY_ISSUED and record.attempts == 0
        rt.close()
