"""verify.peppol_network end to end: the worker waits for the sandbox's DNS, not only the PSB.

The sandbox propagates DNS changes after 5 s on a ManualClock shared with the engine, and
its deliveryOption answers from the SML owner at once (``delivery_view="owner"``), so the
PSB confirms a takeover before the network shows it: only the network guard holds the
migration back, and each look it takes is an audit ``observation``.
"""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest

from migration_engine.backoffice.importer import import_file
from migration_engine.engine.runtime import Runtime
from migration_engine.machine import State
from migration_engine.sandbox import SandboxConfig
from tests.support import engine_settings, expected_moves, kvk, seed_batch

DELAY_S = 5


@pytest.fixture
def sandbox_config():
    return SandboxConfig(propagation_delay_s=DELAY_S, delivery_view="owner")


def network_runtime(db_url, sandbox, clock, **extra) -> Runtime:
    env = {
        "PEPPOL_MIGRATE_VERIFY__PEPPOL_NETWORK": "true",
        "PEPPOL_MIGRATE_VERIFY__DNS_SERVER": sandbox.dns_address,
        "PEPPOL_MIGRATE_VERIFY__SML_ZONE": sandbox.model.config.sml_zone,
        "PEPPOL_MIGRATE_VERIFY__ECONNECT_SMP_HOST": sandbox.smp_url("econnect"),
        "PEPPOL_MIGRATE_VERIFY__TIMEOUT_S": "2",
        "PEPPOL_MIGRATE_TAKEOVER__POLL_S": "1",
        "PEPPOL_MIGRATE_TAKEOVER__POLL_MAX_S": "2",
        **extra,
    }
    rt = Runtime(engine_settings(db_url, sandbox.url, **env), clock=clock)
    rt.store.upgrade()
    return rt


def run_batch(rt, tmp_path, sandbox, **parties):
    seed_batch(sandbox.model, tmp_path / "batch.csv", **parties)
    import_file(rt, path=tmp_path / "batch.csv", batch_name="b", dry_run=False, actor="test")
    with rt.worker(worker_id="w") as worker:
        worker.run(until_idle=True)


def transition(events, from_state):
    [found] = [e for e in events if e.kind == "transition" and e.from_state is from_state]
    return found


def test_inbound_stays_in_takeover_submitted_until_dns_shows_econnect(tmp_path, sandbox, clock, db_url):
    party = kvk(1)
    rt = network_runtime(db_url, sandbox, clock)
    run_batch(rt, tmp_path, sandbox, inbound=[party])

    [record] = rt.store.find_party(party)
    assert record.state is State.COMPLETED
    events = rt.store.events(record.id)
    moves = [(e.from_state, e.to_state) for e in events if e.kind == "transition"]
    assert [(a and a.value, b and b.value) for a, b in moves] == expected_moves(record.direction)
    submitted = transition(events, State.KEY_ISSUED).at
    confirmed = transition(events, State.TAKEOVER_SUBMITTED)
    assert confirmed.at - submitted >= timedelta(seconds=DELAY_S), "confirmed before DNS propagated"
    assert confirmed.detail["network"]["sml"] == {
        "name": confirmed.detail["network"]["sml"]["name"],
        "status": "found",
        "smp_url": sandbox.smp_url("econnect"),
        "econnect": True,
    }
    waits = [e for e in events if e.kind == "observation" and e.from_state is State.TAKEOVER_SUBMITTED]
    assert waits, "every look at the network while waiting is an audit event"
    for wait in waits:
        assert wait.at < submitted + timedelta(seconds=DELAY_S)
        assert wait.detail["network"]["sml"]["smp_url"] == sandbox.smp_url("provider-b")
        assert wait.detail["network"]["sml"]["econnect"] is False
        assert "does not point at eConnect's SMP" in wait.detail["waiting_for"]

    verified = transition(events, State.PERMISSIONS_SET).detail["network"]
    assert verified["smp"]["missing"] == [] and verified["smp"]["document_types"] >= 3
    assert verified["smp"]["endpoints"] == [sandbox.model.config.access_point_url]
    assert rt.store.verify_audit() == []
    rt.close()


def test_outbound_waits_until_dns_points_at_the_new_provider(tmp_path, sandbox, clock, db_url):
    party = kvk(2)
    rt = network_runtime(db_url, sandbox, clock)
    run_batch(rt, tmp_path, sandbox, outbound=[party])

    [record] = rt.store.find_party(party)
    assert record.state is State.COMPLETED
    events = rt.store.events(record.id)
    handed_off = transition(events, State.KEY_ISSUED).at
    confirmed = transition(events, State.KEY_DELIVERED)
    assert confirmed.at - handed_off >= timedelta(seconds=DELAY_S)
    assert confirmed.detail["network"]["sml"]["smp_url"] == sandbox.smp_url("provider-b")
    waits = [e for e in events if e.kind == "observation" and e.from_state is State.KEY_DELIVERED]
    assert waits and all(w.detail["network"]["sml"]["econnect"] is True for w in waits)
    assert sandbox.model.owner(party) == "provider-b"
    rt.close()


def test_a_dns_server_that_never_answers_is_retried_then_needs_attention(tmp_path, sandbox, clock, db_url):
    party = kvk(3)
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        rt = network_runtime(
            db_url,
            sandbox,
            clock,
            PEPPOL_MIGRATE_VERIFY__DNS_SERVER=f"127.0.0.1:{silent.getsockname()[1]}",
            PEPPOL_MIGRATE_VERIFY__TIMEOUT_S="0.1",
            PEPPOL_MIGRATE_RETRY__MAX_ATTEMPTS="2",
            # The takeover check's own retries; a failing snapshot holds a party earlier
            # (tests/integration/engine/test_snapshot.py).
            PEPPOL_MIGRATE_PARITY__SNAPSHOT="off",
        )
        run_batch(rt, tmp_path, sandbox, inbound=[party])
    finally:
        silent.close()
    [record] = rt.store.find_party(party)
    assert record.state is State.NEEDS_ATTENTION and record.failed_state is State.TAKEOVER_SUBMITTED
    assert record.last_error_code == "DNS" and "no answer from DNS" in (record.last_error or "")
    errors = [e for e in rt.store.events(record.id) if e.kind == "error"]
    assert errors and errors[0].detail["code"] == "DNS"
    rt.close()
