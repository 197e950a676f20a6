"""The worker's metrics: each one-line call moves the figure it names, endpoint labels hold no
ids, the circuit is read when scraped, and two workers' registries stay apart."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from migration_engine.clock import ManualClock
from migration_engine.engine.breaker import CircuitBreaker
from migration_engine.engine.metrics import NAMES, WorkerMetrics, endpoint_of
from migration_engine.machine import State
from migration_engine.psb.client import ApiCall
from migration_engine.store import Change


def call(method: str, path: str, status: int | None, party: str | None = "0106:12345678") -> ApiCall:
    return ApiCall(method, path, party, status, 12.5, "req-1", None)


def test_endpoint_labels_are_path_templates_without_ids():
    assert endpoint_of(call("GET", "/api/v1/peppol/config/party/0106%3A12345678", 200)) == (
        "/api/v1/peppol/config/party/{partyId}"
    )
    assert endpoint_of(call("GET", "/api/v1/peppol/0106%3A12345678/prepareToMigrate", 200)) == (
        "/api/v1/peppol/{partyId}/prepareToMigrate"
    )
    assert endpoint_of(call("DELETE", "/api/v1/0106%3A12345678/hook/h-42", 204)) == "/api/v1/{partyId}/hook/{hookId}"
    assert endpoint_of(call("DELETE", "/api/v1/user/ops%40example.com/party/0106%3A12345678", 204)) == (
        "/api/v1/user/{name}/party/{partyId}"
    )
    # The token call's path is its URL; a party id the call did not name is still hidden.
    assert endpoint_of(call("POST", "https://identity.example/connect/token", 200, party=None)) == "/connect/token"
    assert endpoint_of(call("GET", "/api/v1/peppol/config/party/0208%3A0123456789", 404, party=None)) == (
        "/api/v1/peppol/config/party/{id}"
    )


def test_each_event_moves_its_figure():
    metrics = WorkerMetrics()
    get = metrics.registry.get_sample_value
    metrics.step_finished(State.REQUESTED, 0.03)
    with metrics.step_timer(State.KEY_ISSUED):
        pass
    metrics.psb_calls(
        [
            call("GET", "/api/v1/peppol/config/party/0106%3A50000001", 200, party="0106:50000001"),
            call("GET", "/api/v1/peppol/config/party/0106%3A50000002", 200, party="0106:50000002"),
            call("PUT", "/api/v1/peppol/config/party/0106%3A50000003", None, party="0106:50000003"),
        ]
    )
    now = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    metrics.claimed(3, now)
    metrics.claimed(0, now)  # an answered claim with nothing due still says the worker claims
    metrics.retried(Change(migration_id=1, expected_state=State.REQUESTED, expected_version=1))
    metrics.retried(
        Change(migration_id=1, expected_state=State.REQUESTED, expected_version=1, new_state=State.NEEDS_ATTENTION)
    )
    metrics.lease_lost()
    metrics.stale_result()

    assert get("peppol_migrate_step_duration_seconds_count", {"state": "requested"}) == 1
    assert get("peppol_migrate_step_duration_seconds_sum", {"state": "requested"}) == 0.03
    assert get("peppol_migrate_step_duration_seconds_count", {"state": "key_issued"}) == 1
    endpoint = "/api/v1/peppol/config/party/{partyId}"
    assert get("peppol_migrate_psb_calls_total", {"endpoint": endpoint, "status": "200"}) == 2
    assert get("peppol_migrate_psb_calls_total", {"endpoint": endpoint, "status": "none"}) == 1
    assert get("peppol_migrate_claimed_migrations_total") == 3
    assert get("peppol_migrate_last_claim_timestamp_seconds") == now.timestamp()
    assert get("peppol_migrate_retries_total") == 1  # the change that fails for good is no retry
    assert get("peppol_migrate_leases_lost_total") == 1
    assert get("peppol_migrate_stale_results_total") == 1


def test_the_circuit_is_read_when_scraped():
    clock = ManualClock()
    breaker = CircuitBreaker(clock=clock, cooldown_s=30)
    metrics = WorkerMetrics(circuit=lambda: breaker.state, in_flight=lambda: 4)
    get = metrics.registry.get_sample_value
    assert get("peppol_migrate_circuit_state", {"state": "closed"}) == 1
    breaker.record(ok=False, reason="401 after a token refresh", systemic=True)
    assert get("peppol_migrate_circuit_state", {"state": "open"}) == 1
    assert get("peppol_migrate_circuit_state", {"state": "closed"}) == 0
    clock.advance(31)
    assert get("peppol_migrate_circuit_state", {"state": "half-open"}) == 1
    assert get("peppol_migrate_steps_in_flight") == 4


def test_every_family_is_exposed_and_two_workers_do_not_share_counts():
    first, second = WorkerMetrics(circuit=lambda: "closed", in_flight=lambda: 0), WorkerMetrics()
    first.lease_lost()
    assert second.registry.get_sample_value("peppol_migrate_leases_lost_total") == 0
    exposed = {f.name for f in text_string_to_metric_families(generate_latest(first.registry).decode())}
    store_families = {"peppol_migrate_migrations", "peppol_migrate_store_up"}  # need a store
    assert set(NAMES) - store_families <= exposed
