"""The worker's decisions (``decide``) and its one loop (``run``), on a real SQLite store, a
scripted PSB (``httpx.MockTransport``) and a ManualClock."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from migration_engine.clock import ManualClock
from migration_engine.engine import handoff as handoff_module
from migration_engine.engine.worker import Worker
from migration_engine.keys import KeyVault
from migration_engine.machine import Direction, State
from migration_engine.peppol.sml import SmlResolver
from migration_engine.peppol.smp import SmpClient
from migration_engine.peppol.verification import NetworkVerifier
from migration_engine.profiles import ProfileCatalog
from migration_engine.psb.client import PsbClient
from migration_engine.psb.key_poster import KeyPoster
from migration_engine.sandbox import SandboxConfig
from migration_engine.sandbox.dns import SandboxDns
from migration_engine.sandbox.model import SandboxModel
from migration_engine.settings import Settings, with_overrides
from migration_engine.store import MigrationRecord, NewMigration, Store
from tests.support import PROFILES, TEST_AUDIT_KEY, TEST_KEK
from tests.support.records import sealed
from tests.support.steps import KEY, OUR_AP, ScriptedPsb

PARTY = "0106:12345678"
OTHER_AP = "https://ap.provider-b.example/as4"
PREPARE = ("GET", "prepareToMigrate")
LEASE_S = 60.0
VAULT = KeyVault(TEST_KEK)


def settings(**sections: dict[str, Any]) -> Settings:
    base: dict[str, dict[str, Any]] = {
        "worker": {"concurrency": 2, "poll_interval_s": 0.05, "lease_s": LEASE_S},
        "keys": {"encryption_key": TEST_KEK},
        "profiles": {"dir": str(PROFILES)},
        "handoff": {"mode": "manual"},
        "outbound": {"cleanup": False},
    }
    for name, body in sections.items():
        base[name] = {**base.get(name, {}), **body}
    return with_overrides(Settings(), **base)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store(tmp_path: Path, clock: ManualClock) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'worker.db'}", clock=clock, audit_key=TEST_AUDIT_KEY)
    store.upgrade()
    yield store
    store.close()


def psb_on(script: Any, clock: ManualClock) -> PsbClient:
    return PsbClient(
        base_url="https://psb.test",
        identity_url="https://id.test",
        client_id="c",
        client_secret="client-secret-xyz",
        transport=httpx.MockTransport(script),
        clock=clock,
    )


def make_worker(
    store: Store, clock: ManualClock, script: Any, *, cfg: Settings | None = None, **kwargs: Any
) -> Worker:
    kwargs.setdefault("handoff", None)
    return Worker(
        store=store,
        psb=psb_on(script, clock),
        settings=cfg or settings(),
        profiles=ProfileCatalog.load(PROFILES),
        vault=VAULT,
        clock=clock,
        worker_id="w1",
        **kwargs,
    )


def add(store: Store, clock: ManualClock, state: State, direction: Direction = Direction.FROM_ECONNECT) -> None:
    has_key = state is not State.REQUESTED or direction is Direction.TO_ECONNECT
    store.add_migrations(
        batch_name="b",
        items=[
            NewMigration(
                party_id=PARTY,
                direction=direction,
                state=state,
                new_provider="provider-b",
                key_issued_at=clock.now() if has_key else None,
                next_run_at=clock.now(),
            )
        ],
        actor="test",
        seal=sealed(VAULT, {PARTY: KEY} if has_key else {}),
    )


def claim(store: Store, worker_id: str = "w1") -> MigrationRecord:
    [record] = store.claim_due(worker_id=worker_id, limit=1, lease_s=LEASE_S)
    return record


def kinds(change: Any) -> list[str]:
    """The kinds of the change's audit events, leaving out the token request's api_call."""
    return [e.kind for e in change.events if e.http_path != "https://id.test/connect/token"]


def open_the_circuit(worker: Worker, clock: ManualClock) -> None:
    """A systemic failure opens the circuit; after its cool-down one probe may run."""
    worker.breaker.record(ok=False, reason="HTTP 401", systemic=True)
    assert worker.breaker.state == "open"
    clock.advance(31)
    assert worker.breaker.allowed(1) == 1  # the probe is taken


# ---- decide ----------------------------------------------------------------------------------


def test_a_transient_psb_error_schedules_the_next_attempt(store: Store, clock: ManualClock) -> None:
    add(store, clock, State.REQUESTED)
    script = ScriptedPsb({PREPARE: httpx.Response(503, json={"code": "API503", "message": "busy"})})
    worker = make_worker(store, clock, script)
    change = worker.decide(claim(store))
    assert change.new_state is None and change.attempts == 1 and change.last_error_code == "API503"
    assert isinstance(change.next_run_at, type(clock.now())) and change.next_run_at > clock.now()
    assert kinds(change) == ["api_call", "error"]
    assert change.events[-2].http_status == 503 and change.events[-1].detail["attempt"] == 1
    applied = store.apply(change)
    assert applied is not None and applied.state is State.REQUESTED and applied.attempts == 1
    worker.close()


def test_a_network_lookup_error_is_retried_and_does_not_trip_the_breaker(store: Store, clock: ManualClock) -> None:
    """The SML's DNS refuses the zone asked for: the network, not the PSB, is in trouble."""
    add(store, clock, State.KEY_DELIVERED)
    options = [{"partyId": PARTY, "documentTypeId": "x", "processId": "p", "protocol": "As4", "url": OTHER_AP}]
    script = ScriptedPsb({("GET", "deliveryOption"): httpx.Response(200, json=options)})
    dns = SandboxDns(SandboxModel(SandboxConfig(), clock), lambda smp: f"http://127.0.0.1/smp/{smp}").start()
    network = NetworkVerifier(
        sml=SmlResolver(zone="not-the-sandbox-zone.example", server=dns.address, timeout_s=5),
        smp=SmpClient(transport=httpx.MockTransport(lambda request: httpx.Response(500))),
        econnect_smp="127.0.0.1/smp/econnect",
    )
    cfg = settings(verify={"peppol_network": True, "econnect_smp_host": "127.0.0.1/smp/econnect"})
    worker = make_worker(store, clock, script, cfg=cfg, network=network)
    try:
        open_the_circuit(worker, clock)
        change = worker.decide(claim(store))
        assert change.attempts == 1 and change.last_error_code == "DNS" and change.new_state is None
        assert kinds(change) == ["api_call", "error"]
        # The probe's PSB call was answered: the circuit closes, whatever the DNS said.
        assert worker.breaker.state == "closed"
    finally:
        worker.close()
        network.close()
        dns.stop()


def test_a_systemic_auth_error_is_recorded_by_the_breaker_and_retried(store: Store, clock: ManualClock) -> None:
    add(store, clock, State.REQUESTED)
    script = ScriptedPsb({PREPARE: httpx.Response(401, json={"code": "API401", "message": "subscription lapsed"})})
    worker = make_worker(store, clock, script)
    change = worker.decide(claim(store))
    assert worker.breaker.state == "open" and "401" in worker.breaker.reason
    assert change.new_state is None and change.attempts == 1  # retried later, not failed for good
    assert kinds(change) == ["api_call", "api_call", "error"]  # the PSB call, and its repeat with a new token
    worker.close()


def test_a_permanent_4xx_fails_into_needs_attention(store: Store, clock: ManualClock) -> None:
    add(store, clock, State.REQUESTED)
    script = ScriptedPsb({PREPARE: httpx.Response(400, json={"code": "API400", "message": "blocked by KvK"})})
    worker = make_worker(store, clock, script)
    change = worker.decide(claim(store))
    assert change.new_state is State.NEEDS_ATTENTION and change.failed_state is State.REQUESTED
    assert change.last_error_code == "API400" and "blocked by KvK" in str(change.last_error)
    assert kinds(change) == ["api_call", "transition"]
    assert worker.breaker.state == "closed"  # a refusal is the API working
    applied = store.apply(change)
    assert applied is not None and applied.state is State.NEEDS_ATTENTION
    worker.close()


def test_a_lost_lease_waits_and_its_result_is_discarded(store: Store, clock: ManualClock) -> None:
    add(store, clock, State.REQUESTED)
    script = ScriptedPsb({PREPARE: httpx.Response(200, json={"migrationKey": KEY})})
    worker = make_worker(store, clock, script)
    stale = claim(store)
    clock.advance(LEASE_S + 1)
    claim(store, worker_id="w2")  # another worker takes the row over
    change = worker.decide(stale)
    assert change.new_state is None and change.next_run_at == clock.now()
    assert kinds(change) == ["observation"] and "another worker" in change.events[0].detail["note"]
    assert script.requests == []  # the fence stopped the step before prepareToMigrate
    assert store.apply(change) is None  # the compare-and-set discards it
    worker.close()


def test_a_state_without_a_step_waits_for_an_operator(store: Store, clock: ManualClock) -> None:
    add(store, clock, State.NEEDS_ATTENTION)
    script = ScriptedPsb({})
    worker = make_worker(store, clock, script)
    change = worker.decide(claim(store))
    assert change.new_state is None and change.next_run_at is None
    assert kinds(change) == ["observation"] and "no step runs in needs_attention" in change.events[0].detail["note"]
    assert script.requests == []
    worker.close()


def test_a_probe_whose_step_made_no_call_is_handed_back(store: Store, clock: ManualClock) -> None:
    add(store, clock, State.REQUESTED, direction=Direction.TO_ECONNECT)  # imported with its key: no call
    worker = make_worker(store, clock, ScriptedPsb({}))
    open_the_circuit(worker, clock)
    assert not worker.breaker.may_claim()  # the probe is out
    change = worker.decide(claim(store))
    assert change.new_state is State.KEY_ISSUED and kinds(change) == ["transition"]
    assert worker.breaker.may_claim() and worker.breaker.state == "half-open"  # the next claim probes again
    worker.close()


def test_a_failing_handoff_is_retried_and_is_not_the_breakers(store: Store, clock: ManualClock) -> None:
    """The new provider's endpoint answers 503: the POST is audited and retried, and the PSB's
    circuit learns nothing from it (the probe is handed back)."""
    add(store, clock, State.KEY_ISSUED)
    poster = KeyPoster(transport=httpx.MockTransport(lambda request: httpx.Response(503)), clock=clock)
    handoff = handoff_module.HttpsHandoff("https://provider.example/keys", poster)
    worker = make_worker(store, clock, ScriptedPsb({}), handoff=handoff)
    open_the_circuit(worker, clock)
    change = worker.decide(claim(store))
    assert change.new_state is None and change.attempts == 1 and change.last_error_code == "HANDOFF503.JSON02"
    assert [(e.kind, e.http_method, e.http_path, e.http_status) for e in change.events[:1]] == [
        ("api_call", "POST", "https://provider.example/keys", 503)
    ]
    assert kinds(change) == ["api_call", "error"]
    assert worker.breaker.may_claim() and worker.breaker.state == "half-open"
    assert KEY not in str(change)
    worker.close()
    handoff.close()


# ---- the loop --------------------------------------------------------------------------------


def test_run_until_idle_skips_the_clock_to_a_poll_an_hour_away(store: Store, clock: ManualClock) -> None:
    """prepareToMigrate, the https handoff, then the new provider takes over only after an hour
    (the next poll, with takeover.poll_s one hour): the loop skips the clock ahead, no waiting."""
    start = clock.now()
    taken_at = start + timedelta(hours=1)
    posted: list[httpx.Request] = []

    def options(request: httpx.Request) -> httpx.Response:
        url = OUR_AP if clock.now() < taken_at else OTHER_AP
        return httpx.Response(200, json=[{"partyId": PARTY, "documentTypeId": "x", "processId": "p", "url": url}])

    def provider(request: httpx.Request) -> httpx.Response:
        posted.append(request)
        return httpx.Response(202)

    script = ScriptedPsb({PREPARE: httpx.Response(200, json={"migrationKey": KEY}), ("GET", "deliveryOption"): options})
    handoff = handoff_module.HttpsHandoff(
        "https://provider.example/{new_provider}/keys",
        KeyPoster(transport=httpx.MockTransport(provider), clock=clock),
    )
    cfg = settings(
        takeover={"poll_s": 3600, "poll_max_s": 3600},
        handoff={"mode": "https", "endpoint": "https://provider.example/{new_provider}/keys"},
    )
    add(store, clock, State.REQUESTED)
    worker = make_worker(store, clock, script, cfg=cfg, handoff=handoff)
    began = time.monotonic()
    worker.run(until_idle=True)
    assert time.monotonic() - began < 60, "the loop waited for real time"
    [record] = store.find_party(PARTY)
    assert record.state is State.COMPLETED
    assert clock.now() >= taken_at
    assert [r.url.path for r in posted] == ["/provider-b/keys"]
    handoff_calls = [e for e in store.events(record.id) if e.http_path and "provider.example" in e.http_path]
    assert [(e.http_path, e.http_status) for e in handoff_calls] == [("https://provider.example/provider-b/keys", 202)]
    [shown] = store.workers(since=start)
    assert shown.stopped_at is not None and shown.heartbeat_at >= taken_at  # renewed after the jump, then stopped
    handoff.close()


def test_run_until_idle_returns_at_once_when_nothing_is_left(store: Store, clock: ManualClock) -> None:
    worker = make_worker(store, clock, ScriptedPsb({}))
    worker.run(until_idle=True)
    assert worker.steps_run == 0 and clock.now() == ManualClock().now()
    with pytest.raises(RuntimeError, match="runs once"):
        worker.run(until_idle=True)


def test_a_failed_renewal_of_an_earlier_claim_is_no_lost_lease(store: Store, clock: ManualClock) -> None:
    """The renewal reads the running claims, then renews them one by one; meanwhile a step may be
    recorded and its row claimed again by this same worker. The earlier claim's renewal then
    misses (the version moved on), but the lease this worker holds is the newer one: no warning."""
    add(store, clock, State.REQUESTED)
    worker = make_worker(store, clock, ScriptedPsb({}))
    first = claim(store)
    again = dataclasses.replace(first, version=first.version + 2)  # recorded, then claimed again
    worker._in_flight[first.id] = again
    assert not worker._still_in_flight(first)
    assert worker._still_in_flight(again)
    worker.close()
