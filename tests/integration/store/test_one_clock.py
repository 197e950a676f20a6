"""One clock for every worker on PostgreSQL (store/db_clock.py): two stores on one database, one
on a host whose wall clock is a minute off. The database's time is real; the skewed host's is
the real clock shifted (tests/support/clocks.py). Nothing sleeps: every check is about where
the times written land, against the database's own ``clock_timestamp()``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy.engine import URL

from migration_engine.clock import Clock, SystemClock
from migration_engine.engine.runtime import Runtime
from migration_engine.machine import Direction, State
from migration_engine.settings import Settings, with_overrides
from migration_engine.store import MigrationRecord, NewMigration, Store
from migration_engine.store.db_clock import DatabaseClock
from tests.support import TEST_AUDIT_KEY
from tests.support.clocks import SkewedClock
from tests.support.postgres import connect as connect_postgres

pytestmark = pytest.mark.postgres

MINUTE_S = 60.0
LEASE_S = 30.0
SLACK = timedelta(seconds=1)  # far more than a local round trip; far less than the skew


@pytest.fixture
def pg_url(postgres_database: URL) -> str:
    """This module's PostgreSQL database, emptied."""
    with connect_postgres(postgres_database) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    return postgres_database.render_as_string(hide_password=False)


@pytest.fixture
def open_store(pg_url: str) -> Iterator[Callable[..., Store]]:
    """A store as one worker host has it: on the database's clock read through itself
    (``one_clock``, as the runtime wires it), or on the host's clock alone."""
    stores: list[Store] = []

    def make(host: Clock, *, one_clock: bool = True) -> Store:
        own: list[Store] = []
        clock = DatabaseClock(host, lambda: own[0].server_time()) if one_clock else host
        store = Store(pg_url, clock=clock, audit_key=TEST_AUDIT_KEY)
        own.append(store)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


def add(store: Store, i: int, *, due: datetime) -> MigrationRecord:
    party = f"0106:{20000000 + i}"
    item = NewMigration(party_id=party, direction=Direction.FROM_ECONNECT, state=State.REQUESTED, next_run_at=due)
    store.add_migrations(batch_name="b", items=[item], actor="tester")
    return store.find_party(party)[0]


def skew_of(store: Store) -> float | None:
    assert isinstance(store.clock, DatabaseClock)
    return store.clock.skew_s


def test_a_host_a_minute_ahead_cannot_take_a_live_lease(open_store: Callable[..., Store]) -> None:
    honest = open_store(SystemClock())
    honest.upgrade()
    ahead = open_store(SkewedClock(SystemClock(), MINUTE_S))
    row = add(honest, 1, due=honest.clock.now() - SLACK)

    [mine] = honest.claim_due(worker_id="honest", limit=5, lease_s=LEASE_S)
    assert mine.id == row.id
    assert ahead.claim_due(worker_id="ahead", limit=5, lease_s=LEASE_S) == []
    assert skew_of(ahead) == pytest.approx(MINUTE_S, abs=SLACK.total_seconds())  # it is a minute ahead
    assert honest.renew_lease(migration_id=mine.id, worker_id="honest", version=mine.version, lease_s=LEASE_S)

    # The hole this closes: the same host on its own clock takes the live lease.
    on_its_own = open_store(SkewedClock(SystemClock(), MINUTE_S), one_clock=False)
    [taken] = on_its_own.claim_due(worker_id="on-its-own", limit=5, lease_s=LEASE_S)
    assert taken.id == mine.id


@pytest.mark.parametrize("offset_s", [MINUTE_S, -MINUTE_S], ids=["ahead", "behind"])
def test_due_times_and_leases_written_by_a_skewed_host_are_on_the_databases_time(
    open_store: Callable[..., Store], offset_s: float
) -> None:
    other = open_store(SystemClock())
    other.upgrade()
    skewed = open_store(SkewedClock(SystemClock(), offset_s))
    later = timedelta(minutes=10)

    before = other.server_time()
    due_now = add(skewed, 1, due=skewed.clock.now() - SLACK)
    due_later = add(skewed, 2, due=skewed.clock.now() + later)
    after = other.server_time()
    assert due_now.next_run_at is not None and due_later.next_run_at is not None
    assert before - 2 * SLACK <= due_now.next_run_at <= after
    assert before + later - SLACK <= due_later.next_run_at <= after + later + SLACK

    before = other.server_time()
    [leased] = skewed.claim_due(worker_id="skewed", limit=5, lease_s=LEASE_S)  # not the later one
    after = other.server_time()
    assert leased.id == due_now.id and leased.lease_until is not None
    lease = timedelta(seconds=LEASE_S)
    assert before + lease - SLACK <= leased.lease_until <= after + lease + SLACK
    # So the other worker neither takes the live lease nor finds the later row due early.
    assert other.claim_due(worker_id="other", limit=5, lease_s=LEASE_S) == []
    assert skew_of(skewed) == pytest.approx(offset_s, abs=SLACK.total_seconds())  # its host clock is off


def test_the_runtime_puts_a_production_worker_on_the_databases_clock(pg_url: str) -> None:
    runtime = Runtime(with_overrides(Settings(), database={"url": pg_url}))
    try:
        assert isinstance(runtime.clock, DatabaseClock)
        assert runtime.store.clock is runtime.clock
        before = runtime.store.server_time()
        now = runtime.clock.now()
        after = runtime.store.server_time()
        assert before - SLACK <= now <= after + SLACK
        assert runtime.clock.skew_s is not None and abs(runtime.clock.skew_s) < SLACK.total_seconds()
    finally:
        runtime.close()
