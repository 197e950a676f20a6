"""Which clock the runtime gives the engine: on PostgreSQL in production, the database's (so
workers on several hosts share one); on SQLite, or when a test injects one, the clock given."""

from __future__ import annotations

import pytest

from migration_engine.clock import ManualClock, SystemClock
from migration_engine.engine.runtime import Runtime
from migration_engine.settings import Settings, with_overrides
from migration_engine.store.db_clock import DatabaseClock

POSTGRES_URLS = ["postgresql+psycopg://pm@db.invalid/pm", "postgresql://pm@db.invalid/pm", "postgres://db.invalid/pm"]


def on(url: str) -> Settings:
    return with_overrides(Settings(), database={"url": url})


@pytest.mark.parametrize("url", POSTGRES_URLS)
def test_postgresql_in_production_runs_on_the_databases_clock(url: str) -> None:
    runtime = Runtime(on(url))
    try:
        assert isinstance(runtime.clock, DatabaseClock)
        assert runtime._store is None  # nothing connects until the time is first read
    finally:
        runtime.close()


def test_sqlite_keeps_the_hosts_clock() -> None:
    runtime = Runtime(on("sqlite:///peppol-migrate.db"))
    assert type(runtime.clock) is SystemClock


def test_an_injected_clock_is_kept_on_postgresql_too() -> None:
    clock = ManualClock()
    assert Runtime(on(POSTGRES_URLS[0]), clock=clock).clock is clock
