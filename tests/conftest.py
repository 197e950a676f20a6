"""Fixtures every suite shares: the database on each backend, the test's clock and the
sandbox's configuration. Each suite's own fixtures are in its conftest.py (the integration
tests' sandbox runs on the test's ManualClock, the acceptance tests' on the system clock);
helpers that tests import are in tests/support.

``db_url`` is parametrised over both backends and gives each test an EMPTY database (no
tables): a SQLite file in ``tmp_path``, or a PostgreSQL database ``pm_test_<random>``
created once per test module (through the ``postgres`` database) whose ``public`` schema is
reset before every test, and dropped after the module.

PostgreSQL is found at ``PEPPOL_MIGRATE_TEST_POSTGRES_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``). When it is unreachable the
PostgreSQL cases skip, except under ``CI=true`` where they fail.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from migration_engine.clock import ManualClock
from migration_engine.sandbox import SandboxConfig
from migration_engine.store import Store
from tests.support import TEST_AUDIT_KEY
from tests.support.postgres import connect as connect_postgres

POSTGRES_URL_ENV = "PEPPOL_MIGRATE_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def _pg_url(url: str | URL) -> URL:
    parsed = sa.make_url(url)
    return parsed.set(drivername="postgresql+psycopg")


@pytest.fixture(scope="session")
def postgres_admin_url() -> URL:
    """The maintenance database's URL; skips (or fails under CI=true) when unreachable."""
    url = _pg_url(os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL))
    try:
        connect_postgres(url).close()
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL unreachable at {url.render_as_string(hide_password=True)}: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return url


@pytest.fixture(scope="module")
def postgres_database(postgres_admin_url: URL) -> Iterator[URL]:
    """A fresh PostgreSQL database for this test module, dropped afterwards."""
    name = f"pm_test_{secrets.token_hex(6)}"
    with connect_postgres(postgres_admin_url) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_admin_url.set(database=name)
    finally:
        with connect_postgres(postgres_admin_url) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """An empty database on each backend, as a SQLAlchemy URL string."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: URL = request.getfixturevalue("postgres_database")
    with connect_postgres(url) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    return url.render_as_string(hide_password=False)


@pytest.fixture
def clock() -> ManualClock:
    """The test's clock: time moves only when the test advances it."""
    return ManualClock()


@pytest.fixture
def sandbox_config() -> SandboxConfig:
    """The configuration of the test's ``sandbox``; a module overrides this fixture to change it."""
    return SandboxConfig()


@pytest.fixture
def make_store(db_url: str, clock: ManualClock) -> Iterator[Callable[..., Store]]:
    """Build extra ``Store`` objects on the test's database (e.g. one per simulated process)."""
    stores: list[Store] = []

    def make(*, upgrade: bool = True, **kwargs: Any) -> Store:
        kwargs.setdefault("audit_key", TEST_AUDIT_KEY)
        store = Store(db_url, clock=kwargs.pop("clock", clock), **kwargs)
        stores.append(store)
        if upgrade:
            store.upgrade()
        return store

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def store(make_store: Callable[..., Store]) -> Store:
    """A ``Store`` on an upgraded, empty database, on the test's ``ManualClock``."""
    return make_store()


@pytest.fixture
def run_sql(db_url: str) -> Iterator[Callable[..., list[Any]]]:
    """Run raw SQL on the test's database, outside the store (to tamper, or to peek)."""
    url = sa.make_url(db_url)
    if url.get_backend_name() == "postgresql":
        url = _pg_url(url)
    engine = sa.create_engine(url, poolclass=NullPool)

    def run(sql: str, **params: Any) -> list[Any]:
        with engine.begin() as conn:
            result = conn.execute(sa.text(sql), params)
            return list(result.all()) if result.returns_rows else []

    yield run
    engine.dispose()
