"""A worker's Prometheus metrics: what an operator needs to see a migration run from outside.

One ``WorkerMetrics`` per worker, on its own ``CollectorRegistry`` rather than the process-wide
default, so a test (or the benchmark) may run several workers in one process without their
counts mixing or a second registration failing.

Two kinds of figures:

- events the worker reports as they happen, each a one-line call from its code paths:
  ``step_timer`` / ``step_finished`` (a step and how long it took, by the state it ran in),
  ``psb_calls`` (each PSB exchange by endpoint and HTTP status), ``claimed`` (a claim query
  answered, and how many rows it gave), ``retried`` (a transient error scheduled for a retry),
  ``lease_lost`` and ``stale_result`` (another worker took a row over);
- figures read at scrape time, because they are state and not events: migrations per
  direction and state (one GROUP BY in the store), the breaker's state and the steps in flight.
  Reading them when Prometheus asks keeps the worker's hot path free of bookkeeping, and a
  count read from the database is right even when other workers did the work.

The metric names are listed in ``NAMES``; deploy/README.md shows alerts built on them.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from urllib.parse import quote, urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from migration_engine.errors import StoreError
from migration_engine.machine import State
from migration_engine.psb.client import ApiCall
from migration_engine.store import Change, Store

log = logging.getLogger("migration_engine.engine.metrics")

PREFIX = "peppol_migrate"
CIRCUIT_STATES = ("closed", "half-open", "open")

# Steps are mostly one to a few HTTP calls of tens of milliseconds; a takeover poll or a
# throttled call with Retry-After may take seconds.
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

NAMES = (
    f"{PREFIX}_migrations",
    f"{PREFIX}_store_up",
    f"{PREFIX}_circuit_state",
    f"{PREFIX}_steps_in_flight",
    f"{PREFIX}_step_duration_seconds",
    f"{PREFIX}_psb_calls",
    f"{PREFIX}_claimed_migrations",
    f"{PREFIX}_last_claim_timestamp_seconds",
    f"{PREFIX}_retries",
    f"{PREFIX}_leases_lost",
    f"{PREFIX}_stale_results",
)
"""Every metric family a worker exposes (counters without their ``_total`` suffix)."""

# Path segments that identify a party, a hook or a user: replaced by a placeholder, so the
# endpoint label has a handful of values rather than one per party.
_HOOK = re.compile(r"/hook/[^/]+")
_USER = re.compile(r"/user/[^/]+")
_ID_LIKE = re.compile(r"(?<=/)[^/]*(?:%3A|:)[^/]*")  # a segment holding an ICD:value id


def endpoint_of(call: ApiCall) -> str:
    """The endpoint of a call as a path template (``/api/v1/peppol/config/party/{partyId}``).

    The token call's path is a full URL; only its path is kept. Ids never reach a label: a
    label value per party would make one time series per party in Prometheus.
    """
    path = urlsplit(call.path).path or call.path
    if call.party_id:
        path = path.replace(quote(call.party_id, safe=""), "{partyId}").replace(call.party_id, "{partyId}")
    path = _HOOK.sub("/hook/{hookId}", path)
    path = _USER.sub("/user/{name}", path)
    return _ID_LIKE.sub("{id}", path)


class _StateCollector(Collector):
    """Figures read when Prometheus scrapes: migrations per direction and state, the circuit,
    the steps in flight. A database that cannot answer makes ``store_up`` 0, not a failed
    scrape: the other figures are what an operator then needs most."""

    def __init__(
        self, store: Store | None, circuit: Callable[[], str] | None, in_flight: Callable[[], int] | None
    ) -> None:
        self._store = store
        self._circuit = circuit
        self._in_flight = in_flight

    def collect(self) -> Iterator[Metric]:
        if self._store is not None:
            up = GaugeMetricFamily(f"{PREFIX}_store_up", "1 when the database answered the count of migrations")
            try:
                counts = self._store.counts()
            except StoreError as exc:
                log.warning(f"metrics: migrations not counted: {exc}", extra={"action": "metrics_store_down"})
                up.add_metric([], 0)
            else:
                up.add_metric([], 1)
                family = GaugeMetricFamily(
                    f"{PREFIX}_migrations",
                    "Migrations in the database by direction and state (every worker's, read at scrape time)",
                    labels=["direction", "state"],
                )
                for direction, state, n in counts:
                    family.add_metric([direction.value, state.value], n)
                yield family
            yield up
        if self._circuit is not None:
            current = self._circuit()
            circuit = GaugeMetricFamily(
                f"{PREFIX}_circuit_state",
                "The worker's circuit breaker: 1 for its current state (open: claiming paused)",
                labels=["state"],
            )
            for name in CIRCUIT_STATES:
                circuit.add_metric([name], 1 if name == current else 0)
            yield circuit
        if self._in_flight is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_steps_in_flight",
                "Migrations this worker has claimed and not yet recorded",
                self._in_flight(),
            )

    def describe(self) -> Iterator[Metric]:
        """Nothing: described at registration, ``collect`` would read the database."""
        return iter(())


class WorkerMetrics:
    """The metrics of one worker, on ``registry`` (a new one by default).

    ``store``, ``circuit`` (the breaker's state) and ``in_flight`` are read at scrape time;
    any of them may be left out (e.g. a test of the event counters alone).
    """

    def __init__(
        self,
        *,
        store: Store | None = None,
        circuit: Callable[[], str] | None = None,
        in_flight: Callable[[], int] | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=False)
        r = self.registry
        self._steps = Histogram(
            f"{PREFIX}_step_duration_seconds",
            "Steps run by this worker and how long each took, by the state it ran in",
            ["state"],
            buckets=STEP_BUCKETS,
            registry=r,
        )
        self._calls = Counter(
            f"{PREFIX}_psb_calls",
            "PSB calls by endpoint (a path template) and HTTP status (none: no answer came)",
            ["endpoint", "status"],
            registry=r,
        )
        self._claimed = Counter(f"{PREFIX}_claimed_migrations", "Migrations this worker claimed", registry=r)
        self._last_claim = Gauge(
            f"{PREFIX}_last_claim_timestamp_seconds",
            "When a claim query last answered (rows or none): a stuck worker stops moving it",
            registry=r,
        )
        self._retries = Counter(
            f"{PREFIX}_retries", "Steps that met a transient error and were scheduled to run again", registry=r
        )
        self._leases_lost = Counter(
            f"{PREFIX}_leases_lost", "Leases that could not be renewed while their step ran", registry=r
        )
        self._stale = Counter(
            f"{PREFIX}_stale_results",
            "Step results discarded because another worker took the migration over meanwhile",
            registry=r,
        )
        r.register(_StateCollector(store, circuit, in_flight))

    # ---- events, one call each from the worker --------------------------------------------

    def step_finished(self, state: State | str, seconds: float) -> None:
        """A step that ran in ``state`` took ``seconds`` (wall time, not the engine's clock)."""
        self._steps.labels(str(state)).observe(max(seconds, 0.0))

    @contextmanager
    def step_timer(self, state: State | str) -> Iterator[None]:
        """Time the block as one step in ``state``; a step that raised is still a step run."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.step_finished(state, time.perf_counter() - started)

    def psb_call(self, call: ApiCall) -> None:
        """One PSB exchange."""
        self._calls.labels(endpoint_of(call), str(call.status) if call.status is not None else "none").inc()

    def psb_calls(self, calls: Iterable[ApiCall]) -> None:
        """A step's PSB exchanges."""
        for call in calls:
            self.psb_call(call)

    def claimed(self, n: int, now: datetime) -> None:
        """A claim query answered with ``n`` rows at ``now``."""
        if n:
            self._claimed.inc(n)
        self._last_claim.set(now.timestamp())

    def retried(self, change: Change) -> None:
        """A transient error's change: counted when it stays in its state to run again (not
        when the attempts are used up and it fails)."""
        if change.new_state is None:
            self._retries.inc()

    def retry(self) -> None:
        """One retry scheduled."""
        self._retries.inc()

    def lease_lost(self) -> None:
        """A running step's lease could not be renewed."""
        self._leases_lost.inc()

    def stale_result(self) -> None:
        """A result was discarded by the compare-and-set: another worker had taken the row over."""
        self._stale.inc()
