"""The worker's loop runs the reconciler: at start, then whenever the engine's clock (a
ManualClock here) says ``reconciler.interval_s`` has passed; a drain (until_idle) does not.

Real SQLite store; the PSB is an ``httpx.MockTransport`` that is never asked (no network is
configured, so only ``key_unused`` is checked). Runs are observed through ``on_run``; every
wait is bounded by ``GUARD_S`` real seconds.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from migration_engine.clock import ManualClock
from migration_engine.engine.reconciler import Reconciler, RunStats
from migration_engine.engine.worker import Worker
from migration_engine.keys import KeyVault
from migration_engine.machine import Direction, State
from migration_engine.profiles import ProfileCatalog
from migration_engine.psb.client import PsbClient
from migration_engine.settings import Settings, with_overrides
from migration_engine.store import NewMigration, Store
from tests.support import PROFILES, TEST_AUDIT_KEY, TEST_KEK

GUARD_S = 20.0
INTERVAL_S = 900.0
SETTINGS = with_overrides(
    Settings(),
    worker={"concurrency": 2, "poll_interval_s": 0.05, "lease_s": 60.0},
    keys={"encryption_key": TEST_KEK},
    profiles={"dir": str(PROFILES)},
    handoff={"mode": "manual"},
    reconciler={"interval_s": INTERVAL_S, "key_unused_h": 1.0, "realert_h": 0.0},
    parity={"snapshot": "off"},
)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store(tmp_path: Path, clock: ManualClock) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'loop.db'}", clock=clock, audit_key=TEST_AUDIT_KEY)
    store.upgrade()
    yield store
    store.close()


def no_psb(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"the PSB was asked {request.method} {request.url.path}")


def worker_with(store: Store, clock: ManualClock, runs: queue.Queue[RunStats]) -> Worker:
    psb = PsbClient(
        base_url="https://psb.test",
        identity_url="https://id.test",
        client_id="c",
        client_secret="client-secret-xyz",
        transport=httpx.MockTransport(no_psb),
        clock=clock,
    )
    reconciler = Reconciler(store=store, psb=psb, network=None, settings=SETTINGS, clock=clock, on_run=runs.put)
    return Worker(
        store=store,
        psb=psb,
        settings=SETTINGS,
        profiles=ProfileCatalog.load(PROFILES),
        vault=KeyVault(TEST_KEK),
        clock=clock,
        worker_id="w1",
        handoff=None,
        reconciler=reconciler,
    )


def add_unused_key(store: Store, clock: ManualClock) -> int:
    """An outbound migration waiting for the takeover with a key issued two hours ago (not due)."""
    item = NewMigration(
        party_id="0106:12345678",
        direction=Direction.FROM_ECONNECT,
        state=State.KEY_DELIVERED,
        new_provider="provider-b",
        key_issued_at=clock.now() - timedelta(hours=2),
    )
    store.add_migrations(batch_name="b", items=[item], actor="test")
    return store.find_party(item.party_id)[0].id


def test_the_service_loop_reconciles_at_start_and_when_the_clock_says_it_is_due(store, clock) -> None:
    mid = add_unused_key(store, clock)
    runs: queue.Queue[RunStats] = queue.Queue()
    worker = worker_with(store, clock, runs)
    stop = threading.Event()
    runner = threading.Thread(target=worker.run, kwargs={"until_idle": False, "stop": stop}, daemon=True)
    runner.start()
    try:
        first = runs.get(timeout=GUARD_S)
        assert (first.checked, first.open, first.recorded) == (1, 1, 1)
        started = store.job_run("reconciler")
        assert started is not None and started.finished_at == clock.now() and started.owner is None

        clock.advance(INTERVAL_S)  # the claim job notices on the engine's clock: no wall-clock wait
        second = runs.get(timeout=GUARD_S)
        assert (second.checked, second.open, second.recorded) == (1, 1, 0), "unchanged: not recorded again"
        again = store.job_run("reconciler")
        assert again is not None and again.finished_at == clock.now()
    finally:
        stop.set()
        runner.join(GUARD_S)
    assert not runner.is_alive()
    assert [e.detail["finding"] for e in store.events(mid) if e.kind == "finding"] == ["key_unused"]


def test_a_drain_does_not_reconcile(store, clock) -> None:
    add_unused_key(store, clock)
    runs: queue.Queue[RunStats] = queue.Queue()
    worker = worker_with(store, clock, runs)
    runner = threading.Thread(target=worker.run, kwargs={"until_idle": True}, daemon=True)
    runner.start()
    runner.join(GUARD_S)
    assert not runner.is_alive(), "run(until_idle=True) did not end"
    assert runs.empty() and store.job_run("reconciler") is None
