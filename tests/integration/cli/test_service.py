"""The worker's HTTP endpoints, over real sockets: /healthz, /readyz against a real database
(its schema, a PostgreSQL database that goes away and comes back, a real circuit breaker)
and /metrics scraped and parsed as Prometheus would, during a run against the sandbox."""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from migration_engine.backoffice.importer import import_file
from migration_engine.cli.service import ServiceServer, WorkerReadiness
from migration_engine.clock import ManualClock
from migration_engine.engine.breaker import CircuitBreaker
from migration_engine.engine.metrics import WorkerMetrics
from migration_engine.engine.runtime import Runtime
from migration_engine.store import Store
from tests.support import TEST_AUDIT_KEY, engine_settings, kvk, seed_batch
from tests.support.postgres import connect as connect_postgres


def get(url: str) -> tuple[int, str]:
    """Status and body of a GET, a 5xx included (urllib raises on it)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """``/metrics`` parsed: (sample name, labels) -> value."""
    status, body = get(f"{url}/metrics")
    assert status == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def value(samples, name, **labels) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_ready_only_with_a_current_schema_and_a_closed_circuit(db_url, clock):
    store = Store(db_url, clock=clock, audit_key=TEST_AUDIT_KEY)
    breaker = CircuitBreaker(clock=clock, cooldown_s=30)
    readiness = WorkerReadiness(store, lambda: breaker.state)
    with ServiceServer(registry=WorkerMetrics().registry, readiness=readiness) as service:
        assert service.url.startswith("http://127.0.0.1:")
        assert get(f"{service.url}/healthz") == (200, '{"alive": true}')

        status, body = get(f"{service.url}/readyz")  # an empty database: no schema yet
        assert status == 503
        answer = json.loads(body)
        assert answer["ready"] is False and answer["check"] == "schema" and "db upgrade" in answer["reason"]

        store.upgrade()
        assert get(f"{service.url}/readyz") == (200, '{"ready": true}')

        breaker.record(ok=False, reason="401 after a token refresh", systemic=True)
        status, body = get(f"{service.url}/readyz")
        assert status == 503 and json.loads(body)["check"] == "circuit"
        assert "open" in json.loads(body)["reason"]
        assert get(f"{service.url}/healthz")[0] == 200  # unready is not dead: no restart wanted

        assert get(f"{service.url}/nothing-here")[0] == 404
    store.close()


@pytest.fixture
def own_postgres_database(postgres_admin_url):
    """A PostgreSQL database of this test's own, since the test renames it; dropped afterwards."""
    name = f"pm_ready_{secrets.token_hex(5)}"
    admin = connect_postgres(postgres_admin_url)
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin, name, postgres_admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        for n in (name, f"{name}_away"):
            admin.execute(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)')
        admin.close()


@pytest.mark.postgres
def test_unready_while_the_database_is_gone_and_ready_when_it_is_back(own_postgres_database):
    admin, name, url = own_postgres_database
    store = Store(url, clock=ManualClock(), audit_key=TEST_AUDIT_KEY)
    store.upgrade()
    metrics = WorkerMetrics(store=store, circuit=lambda: "closed")
    with ServiceServer(registry=metrics.registry, readiness=WorkerReadiness(store, lambda: "closed")) as service:
        assert get(f"{service.url}/readyz")[0] == 200
        assert value(scrape(service.url), "peppol_migrate_store_up") == 1

        # The database goes away: its sessions are ended and it no longer exists by its name.
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        admin.execute(f'ALTER DATABASE "{name}" RENAME TO "{name}_away"')
        status, body = get(f"{service.url}/readyz")
        assert status == 503
        answer = json.loads(body)
        assert answer["check"] == "database" and name in answer["reason"]
        assert get(f"{service.url}/healthz")[0] == 200
        down = scrape(service.url)  # the scrape itself still answers, and says the store is down
        assert value(down, "peppol_migrate_store_up") == 0
        assert value(down, "peppol_migrate_circuit_state", state="closed") == 1

        admin.execute(f'ALTER DATABASE "{name}_away" RENAME TO "{name}"')
        assert get(f"{service.url}/readyz") == (200, '{"ready": true}')
        assert value(scrape(service.url), "peppol_migrate_store_up") == 1
    store.close()


def _batch(tmp_path, sandbox, db_url, clock, inbound, outbound) -> Runtime:
    seed_batch(sandbox.model, tmp_path / "batch.csv", inbound=inbound, outbound=outbound)
    rt = Runtime(engine_settings(db_url, sandbox.url), clock=clock)
    rt.store.upgrade()
    import_file(rt, path=tmp_path / "batch.csv", batch_name="b", dry_run=False, actor="test")
    return rt


def test_the_migrations_gauge_follows_a_run_against_the_sandbox(tmp_path, sandbox, clock, db_url):
    inbound, outbound = [kvk(i) for i in range(4)], [kvk(100 + i) for i in range(3)]
    rt = _batch(tmp_path, sandbox, db_url, clock, inbound, outbound)
    worker = rt.worker(worker_id="metrics-1")
    metrics = WorkerMetrics(store=rt.store, circuit=lambda: worker.breaker.state, in_flight=worker.in_flight)
    with ServiceServer(registry=metrics.registry, readiness=WorkerReadiness(rt.store, lambda: "closed")) as service:
        before = scrape(service.url)
        assert value(before, "peppol_migrate_migrations", direction="to-econnect", state="requested") == 4
        assert value(before, "peppol_migrate_migrations", direction="from-econnect", state="requested") == 3
        assert value(before, "peppol_migrate_steps_in_flight") == 0

        worker.run(until_idle=True)

        after = scrape(service.url)
        assert value(after, "peppol_migrate_migrations", direction="to-econnect", state="completed") == 4
        assert value(after, "peppol_migrate_migrations", direction="from-econnect", state="completed") == 3
        assert value(after, "peppol_migrate_migrations", direction="to-econnect", state="requested") is None
        assert value(after, "peppol_migrate_circuit_state", state="closed") == 1
    rt.close()


def test_a_worker_run_shows_in_its_own_metrics(tmp_path, sandbox, clock, db_url):
    """The worker's own registry (its one-line hooks) scraped after a real run: steps by state,
    PSB calls by endpoint, the last claim."""
    inbound, outbound = [kvk(i) for i in range(3)], [kvk(100 + i) for i in range(2)]
    rt = _batch(tmp_path, sandbox, db_url, clock, inbound, outbound)
    worker = rt.worker(worker_id="metrics-2")
    readiness = WorkerReadiness(rt.store, lambda: "closed")
    with ServiceServer(registry=worker.metrics.registry, readiness=readiness) as service:
        worker.run(until_idle=True)
        samples = scrape(service.url)
    rt.close()

    def total(name, **labels):
        return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls)

    # Every migration ran at least one step in requested and completed its path.
    assert total("peppol_migrate_step_duration_seconds_count", state="requested") >= 5
    assert total("peppol_migrate_step_duration_seconds_count") >= 3 * 6 + 2 * 4
    assert total("peppol_migrate_step_duration_seconds_sum") > 0
    assert total("peppol_migrate_psb_calls_total", endpoint="/connect/token", status="200") >= 1
    endpoints = {dict(ls)["endpoint"] for (n, ls), _ in samples.items() if n == "peppol_migrate_psb_calls_total"}
    assert "/api/v1/peppol/config/party/{partyId}" in endpoints
    assert not [e for e in endpoints if "0106" in e], "a party id leaked into a label"
    assert total("peppol_migrate_claimed_migrations_total") >= 5
    assert total("peppol_migrate_last_claim_timestamp_seconds") >= clock.now().timestamp() - 3600
    assert total("peppol_migrate_leases_lost_total") == 0
    assert value(samples, "peppol_migrate_migrations", direction="to-econnect", state="completed") == 3
