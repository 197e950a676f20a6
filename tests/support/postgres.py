"""A plain psycopg connection for tests that manage PostgreSQL databases themselves."""

from __future__ import annotations

from typing import Any

import psycopg
from sqlalchemy.engine import URL


def connect(url: URL) -> psycopg.Connection[Any]:
    """An autocommit connection to ``url`` (a server's admin database, or a test's own), so
    CREATE/DROP/ALTER DATABASE can run; PostgreSQL's usual defaults fill what the URL leaves out."""
    return psycopg.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        user=url.username or "postgres",
        password=url.password or None,
        dbname=url.database or "postgres",
        autocommit=True,
        connect_timeout=5,
    )
