"""The worker's loop (``engine/loop.py``) with ``until_idle`` on a ManualClock, when a row is still
leased although nothing runs here: a lease nobody renews (a crashed step's, a dead worker's) must
not make the run wait forever in real time; another live worker's lease is waited for.

Real SQLite store, a scripted PSB (``httpx.MockTransport``); each run is watched in real time and
stopped (failing the test) if it has not ended well within the guard.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from migration_engine.clock import ManualClock
from migration_engine.engine.worker import Worker
from migration_engine.keys import KeyVault
from migration_engine.machine import Direction, State
from migration_engine.profiles import ProfileCatalog
from migration_engine.psb.client import PsbClient
from migration_engine.settings import Settings, with_overrides
from migration_engine.store import NewMigration, Store, WorkerStatus
from tests.support import PROFILES, TEST_AUDIT_KEY, TEST_KEK
from tests.support.records import sealed
from tests.support.steps import KEY

PARTY = "0106:12345678"
OTHER_AP = "https://ap.provider-b.example/as4"
LEASE_S = 60.0
GUARD_S = 20.0  # real seconds; a run that ends at all ends in well under one
VAULT = KeyVault(TEST_KEK)
SETTINGS = with_overrides(
    Settings(),
    worker={"concurrency": 2, "poll_interval_s": 0.05, "lease_s": LEASE_S},
    keys={"encryption_key": TEST_KEK},
    profiles={"dir": str(PROFILES)},
    handoff={"mode": "manual"},
    outbound={"cleanup": False},
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


class TakenOver:
    """The PSB of a party another provider has taken over: deliveryOption shows its AP.
    ``crash_first`` makes the first lookup raise what no step expects (a bug), so the step
    crashes and its row keeps its lease."""

    def __init__(self, *, crash_first: bool = False) -> None:
        self.crash_next = crash_first
        self.lookups = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/connect/token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600, "token_type": "Bearer"})
        if "deliveryOption" not in request.url.path:  # the party's config: gone from eConnect
            return httpx.Response(404, json={"code": "API404", "message": "not found"})
        self.lookups += 1
        if self.crash_next:
            self.crash_next = False
            raise RuntimeError("a bug in the step")
        options = [{"partyId": PARTY, "documentTypeId": "x", "processId": "p", "url": OTHER_AP}]
        return httpx.Response(200, json=options)


def add_polling(store: Store, clock: ManualClock) -> int:
    """An outbound migration polling for the takeover (key_delivered), due now; its id."""
    store.add_migrations(
        batch_name="b",
        items=[
            NewMigration(
                party_id=PARTY,
                direction=Direction.FROM_ECONNECT,
                state=State.KEY_DELIVERED,
                new_provider="provider-b",
                key_issued_at=clock.now(),
                next_run_at=clock.now(),
            )
        ],
        actor="test",
        seal=sealed(VAULT, {PARTY: KEY}),
    )
    [record] = store.find_party(PARTY)
    return record.id


def worker_on(store: Store, clock: ManualClock, psb: TakenOver, worker_id: str = "w1") -> Worker:
    client = PsbClient(
        base_url="https://psb.test",
        identity_url="https://id.test",
        client_id="c",
        client_secret="client-secret-xyz",
        transport=httpx.MockTransport(psb),
        clock=clock,
    )
    return Worker(
        store=store,
        psb=client,
        settings=SETTINGS,
        profiles=ProfileCatalog.load(PROFILES),
        vault=VAULT,
        clock=clock,
        worker_id=worker_id,
        handoff=None,
    )


def run_until_idle(worker: Worker) -> float:
    """``worker.run(until_idle=True)`` on a thread; the real seconds it took. A run still going
    after ``GUARD_S`` is stopped and the test fails (it was waiting for time that never comes)."""
    stop = threading.Event()
    began = time.monotonic()
    runner = threading.Thread(target=worker.run, kwargs={"until_idle": True, "stop": stop}, daemon=True)
    runner.start()
    runner.join(GUARD_S)
    took = time.monotonic() - began
    if runner.is_alive():
        stop.set()
        runner.join(GUARD_S)
        pytest.fail(f"run(until_idle=True) had not ended after {took:.0f} real seconds: it stalled")
    return took


def test_a_step_that_crashed_does_not_stall_an_until_idle_run(store: Store, clock: ManualClock) -> None:
    """The first poll crashes: its outcome is never stored and the row keeps this worker's lease,
    with nothing in flight. The loop lets the lease run out (skipping the clock), claims the row
    again and finishes the poll."""
    add_polling(store, clock)
    start = clock.now()
    psb = TakenOver(crash_first=True)
    worker = worker_on(store, clock, psb)
    took = run_until_idle(worker)
    [record] = store.find_party(PARTY)
    assert psb.lookups >= 2, "the crashed poll was run again"
    assert record.state is State.COMPLETED and record.lease_owner is None
    assert clock.now() >= start + timedelta(seconds=LEASE_S), "the crashed step's lease ran out first"
    assert took < 10


def test_a_dead_workers_lease_does_not_stall_an_until_idle_run(store: Store, clock: ManualClock) -> None:
    """A worker that died mid-step (no heartbeat since) left its lease: another worker's
    until_idle run takes the row over once the lease has run out."""
    add_polling(store, clock)
    start = clock.now()
    [claimed] = store.claim_due(worker_id="dead-worker", limit=1, lease_s=LEASE_S)
    worker = worker_on(store, clock, TakenOver())
    run_until_idle(worker)
    [record] = store.find_party(PARTY)
    assert record.id == claimed.id and record.state is State.COMPLETED
    assert clock.now() >= start + timedelta(seconds=LEASE_S)


def test_a_live_workers_lease_is_waited_for_not_skipped(store: Store, clock: ManualClock) -> None:
    """Another worker is alive (its heartbeat says so) and holds the row: it ends its step in
    real time, so the run waits for it rather than jump the clock past its lease."""
    migration_id = add_polling(store, clock)
    [claimed] = store.claim_due(worker_id="other", limit=1, lease_s=LEASE_S)
    now = clock.now()
    store.record_worker(
        WorkerStatus(
            worker_id="other",
            started_at=now,
            heartbeat_at=now,
            alive_until=now + timedelta(seconds=LEASE_S),
            stopped_at=None,
            circuit="closed",
            circuit_reason=None,
            steps_run=0,
        )
    )
    psb = TakenOver()
    worker = worker_on(store, clock, psb)
    stop = threading.Event()
    runner = threading.Thread(target=worker.run, kwargs={"until_idle": True, "stop": stop}, daemon=True)
    runner.start()
    runner.join(0.5)  # ten polls of real time
    assert runner.is_alive() and clock.now() == now, "the live worker's lease was not skipped"
    assert psb.lookups == 0
    # The other worker gives the row up (its lease ends now): the waiting run takes it and ends.
    assert store.renew_lease(migration_id=migration_id, worker_id="other", version=claimed.version, lease_s=0)
    runner.join(GUARD_S)
    stop.set()
    assert not runner.is_alive()
    [record] = store.find_party(PARTY)
    assert record.state is State.COMPLETED and psb.lookups == 1
