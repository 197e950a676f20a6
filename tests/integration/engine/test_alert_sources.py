"""Two sources of alerts end to end, on SQLite and PostgreSQL, through the sandbox over loopback
and a webhook receiver (tests/support/webhooks.py), on a ManualClock:

- the worker's circuit breaker opening (raised directly by the worker, engine/worker.py) is one
  ``circuit_open`` alert per opening: a worker that stays open adds none, a failed probe that
  opens it again adds one;
- a reconciler finding (an open ``finding`` audit event, engine/reconciler.py) is one
  ``finding`` alert; the reconciler seeing it again unchanged, and the producer running again,
  repeat nothing.

Each runtime runs with ``alerts.interval_s`` 0, so only the test's pipeline produces and sends.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from migration_engine.backoffice.importer import import_file
from migration_engine.engine.alerts import CIRCUIT_OPEN, FINDING, Alerts
from migration_engine.engine.runtime import Runtime
from migration_engine.machine import Direction, State
from migration_engine.settings import Settings, with_overrides
from migration_engine.store import Change, EventIn, NewMigration
from tests.support import engine_settings, kvk, seed_batch
from tests.support.webhooks import Receiver

SECRET = "webhook-secret-for-tests-0123456789"
QUIET = {"PEPPOL_MIGRATE_ALERTS__INTERVAL_S": "0", "PEPPOL_MIGRATE_RECONCILER__INTERVAL_S": "0"}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.up()
    yield r
    r.down()


def pipeline(rt: Runtime, receiver: Receiver) -> Alerts:
    body = {"webhooks": (receiver.url,), "webhook_secret": SECRET, "digest_s": 60.0, "interval_s": 0.0}
    settings: Settings = with_overrides(rt.settings, alerts=body)
    return Alerts(store=rt.store, settings=settings, clock=rt.clock, owner="test")


class Applied:
    """Counts the worker's applied changes (``on_applied``) and waits for them, without sleeping."""

    def __init__(self) -> None:
        self.count = 0
        self._cond = threading.Condition()

    def __call__(self, record: object) -> None:
        with self._cond:
            self.count += 1
            self._cond.notify_all()

    def wait_for(self, n: int) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self.count >= n, timeout=30), f"{self.count} of {n} applied"


def of_kind(receiver: Receiver, kind: str) -> list[dict]:
    return [r.json for r in receiver.acknowledged if r.json["kind"] == kind]


def test_a_circuit_that_opens_is_one_alert(tmp_path, sandbox, db_url, clock, receiver):
    """The identity server refuses the client secret: the worker's breaker opens."""
    seed_batch(sandbox.model, tmp_path / "b.csv", outbound=[kvk(30), kvk(31)])
    env = {"PEPPOL_MIGRATE_HANDOFF__MODE": "manual", "PEPPOL_MIGRATE_PSB__CLIENT_SECRET": "wrong-secret-1234", **QUIET}
    rt = Runtime(engine_settings(db_url, sandbox.url, **env), clock=clock)
    rt.store.upgrade()
    import_file(rt, path=tmp_path / "b.csv", batch_name="b", dry_run=False, actor="test")
    alerts = pipeline(rt, receiver)
    applied = Applied()
    worker = rt.worker(worker_id="worker-a", on_applied=applied)
    try:
        assert worker.alerts is None
        applied.wait_for(worker.tick())
        assert worker.breaker.state == "open" and "OAUTH01" in worker.breaker.reason
        assert worker.tick() == 0  # still open: no new opening, no new alert

        stats = alerts.run_once()
        assert stats is not None and stats.produced == 0  # raised directly, not from the trail
        clock.advance(61)
        alerts.run_once()
        (message,) = of_kind(receiver, CIRCUIT_OPEN)
        assert message["count"] == 1 and message["title"] == "the circuit breaker opened 1 time"
        (item,) = message["items"]
        assert item["summary"].startswith("worker worker-a: ") and "OAUTH01" in item["summary"]
        assert "wrong-secret-1234" not in receiver.acknowledged[0].body.decode()
        assert len(receiver.acknowledged) == 1  # nothing else was alerted

        # The cool-down passes: one probe, which fails too; the circuit opens again: one more alert.
        clock.advance(30)
        done = applied.count
        assert worker.tick() == 1
        applied.wait_for(done + 1)
        assert worker.breaker.state == "open"
        clock.advance(61)
        alerts.run_once()
        alerts.run_once()
        assert len(of_kind(receiver, CIRCUIT_OPEN)) == 2 and len(receiver.acknowledged) == 2
        assert of_kind(receiver, CIRCUIT_OPEN)[1]["count"] == 1
    finally:
        worker.close()
        rt.close()


@pytest.fixture
def rt(db_url, sandbox, clock) -> Iterator[Runtime]:
    settings = engine_settings(
        db_url,
        sandbox.url,
        PEPPOL_MIGRATE_VERIFY__DNS_SERVER=sandbox.dns_address,
        PEPPOL_MIGRATE_VERIFY__SML_ZONE=sandbox.model.config.sml_zone,
        PEPPOL_MIGRATE_VERIFY__ECONNECT_SMP_HOST=sandbox.smp_url("econnect"),
        PEPPOL_MIGRATE_VERIFY__TIMEOUT_S="2",
        **QUIET,
    )
    runtime = Runtime(settings, clock=clock)
    runtime.store.upgrade()
    yield runtime
    runtime.close()


def test_a_reconciler_finding_is_one_alert_not_repeated(rt, sandbox, clock, receiver):
    party = kvk(2)
    sandbox.model.register(party, "econnect")
    rt.store.add_migrations(
        batch_name="b",
        items=[NewMigration(party_id=party, direction=Direction.TO_ECONNECT, state=State.PERMISSIONS_SET)],
        actor="t",
    )
    record = rt.store.find_party(party)[0]
    done = EventIn(kind="transition", actor="w", from_state=record.state, to_state=State.COMPLETED)
    assert rt.store.apply(Change(record.id, record.state, record.version, new_state=State.COMPLETED, events=[done]))

    alerts = pipeline(rt, receiver)
    reconciler = rt.reconciler(owner="test")
    try:
        assert reconciler.run_once() == []
        with sandbox.model.lock:  # the PSB loses the configuration; the SML still points at eConnect
            sandbox.model.econnect.remove(party)
        [found] = reconciler.run_once()
        assert (found.kind, found.status, found.change) == ("sml_without_config", "open", "new")

        clock.advance(61)  # past the producer's settle time too
        first = alerts.run_once()
        assert first is not None and first.produced == 2  # the batch completed, and the finding
        clock.advance(61)
        alerts.run_once()
        (message,) = of_kind(receiver, FINDING)
        assert message["count"] == 1 and message["batch"] == "b"
        assert message["title"] == "1 reconciler finding in batch b"
        (item,) = message["items"]
        assert item["party_id"] == party and item["summary"].startswith("sml_without_config: ")
        assert message["link"].endswith("/batch?name=b")

        # Seen again unchanged: no new finding event, so nothing new to alert on.
        clock.advance(3600)
        [again] = reconciler.run_once()
        assert again.change == "unchanged"
        for _ in range(3):
            stats = alerts.run_once()
            assert stats is not None and (stats.produced, stats.messages) == (0, 0)
            clock.advance(120)
        assert len(of_kind(receiver, FINDING)) == 1
        assert [r.json["kind"] for r in receiver.acknowledged].count("batch_completed") == 1
    finally:
        reconciler.close()
