"""The engine, its connections and transactions, and the translation of SQLAlchemy errors.

SQLite: one file, many worker threads. Each call checks a connection out of a queue pool
(so each thread works on its own connection), in WAL mode with a busy timeout. The ``sqlite3``
driver's own transaction handling is switched off and SQLAlchemy emits BEGIN itself (the
recipe in SQLAlchemy's SQLite dialect docs), so a write transaction starts with
``BEGIN IMMEDIATE``: it takes the write lock up front and never fails to upgrade a read
snapshot half-way.

``sqlite://`` (in memory) gets one shared connection: single-threaded tests only.

The SQLite file holds every party's migration keys (sealed, but with their audit trail), so
the first connection creates it 0600 itself instead of letting sqlite3 create it under the
umask (usually 0644, readable by every local user). SQLite gives the ``-wal`` and ``-shm``
files the database file's own permissions, so they are 0600 too. An existing file keeps its
mode: that is the operator's.

PostgreSQL: psycopg 3 (``postgresql+psycopg://``), READ COMMITTED, a pool sized for the
worker threads.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, make_url, select
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from migration_engine.clock import Clock
from migration_engine.errors import ActiveMigrationExists, ConfigError, SchemaOutOfDate, StoreError
from migration_engine.store.schema import batches

_IMMEDIATE = "peppol_migrate_begin_immediate"
AUDIT_KEY_INFO = "peppol_migrate_audit_key"  # a write connection's audit key (store/audit.py reads it)
SQLITE_BUSY_TIMEOUT_MS = 30_000


URL_HINT = "use sqlite:///path/to/file.db or postgresql+psycopg://user@host/dbname"
CREATE_HINT = "`peppol-migrate db upgrade` creates it"


def _masked(url: str) -> str:
    """A URL we could not parse, with anything before an ``@`` (user and password) hidden."""
    return f"***@{url.rpartition('@')[2]}" if "@" in url else url


def normalise_url(url: str) -> URL:
    """``postgres://`` and ``postgresql://`` mean psycopg 3 here. ``ConfigError`` (exit 2) for a
    value that is no database URL at all, e.g. a bare file name: SQLAlchemy's own error would
    surface as a traceback."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        guess = f" (a SQLite file: sqlite:///{url})" if "://" not in url and "@" not in url else ""
        raise ConfigError(f"database.url {_masked(url)!r} is not a database URL{guess}: {URL_HINT}") from None
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def sqlite_file(url: URL) -> Path | None:
    """The file of a SQLite URL (``None`` for an in-memory database or another dialect)."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def unreachable(exc: StoreError) -> bool:
    """Whether a translated error means the database could not be reached at all (refused
    connection, unknown host or database, bad password), not that a statement failed."""
    return isinstance(exc.__cause__, OperationalError) and "connect" in str(exc.__cause__).lower()


def _create_private(path: str) -> None:
    """Create an empty database file 0600 if there is none (an empty file is a valid, empty
    SQLite database). ``O_EXCL`` makes concurrent first connections safe; a missing folder or
    another failure is left for sqlite3 to report in its own words."""
    with suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _sqlite_engine(url: URL, pool_size: int) -> Engine:
    connect_args = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    if url.database in (None, "", ":memory:"):
        # An in-memory database lives in its connection: one connection, for single-threaded
        # tests only. Worker threads need a file.
        engine = create_engine(url, poolclass=StaticPool, hide_parameters=True, connect_args=connect_args)
    else:
        engine = create_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            hide_parameters=True,
            connect_args=connect_args,
        )

    path = sqlite_file(url)
    if path is not None and not url.query.get("uri"):

        @event.listens_for(engine, "do_connect")
        def _before_connect(_dialect: Any, _record: ConnectionPoolEntry, _cargs: Any, _cparams: Any) -> None:
            _create_private(str(path))

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Stop sqlite3 from emitting BEGIN by itself (and from committing before DDL).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _postgres_engine(url: URL, pool_size: int) -> Engine:
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        hide_parameters=True,
    )


def _unique_party_violation(exc: IntegrityError) -> bool:
    text = str(exc.orig)
    return "uq_migrations_open_party" in text or "migrations.party_id" in text


def _reason(exc: SQLAlchemyError) -> str:
    """The driver's message (first line), plus PostgreSQL's detail, e.g. the duplicate key."""
    orig = getattr(exc, "orig", None)
    reason = str(orig if orig is not None else exc).strip().splitlines()[0]
    detail = getattr(getattr(orig, "diag", None), "message_detail", None)
    return f"{reason}: {detail}" if detail else reason


class Database:
    """An engine plus the store's conventions: short transactions, translated errors."""

    def __init__(self, url: str, *, clock: Clock, pool_size: int, audit_key: str | None = None) -> None:
        self.url = normalise_url(url)
        self.clock = clock
        self.audit_key = audit_key or None  # the audit trail's HMAC key (audit.require_key checks it)
        self.dialect = self.url.get_backend_name()
        if self.dialect == "sqlite":
            self.engine = _sqlite_engine(self.url, pool_size)
        elif self.dialect == "postgresql":
            self.engine = _postgres_engine(self.url, pool_size)
        else:
            raise ConfigError(f"database.url: unsupported database {self.dialect!r}: {URL_HINT}")
        self._write_engine = self.engine.execution_options(**{_IMMEDIATE: True})
        # SQLite has one writer at a time. Threads of this process queue for it here, on a
        # lock that wakes the next one at once, instead of in SQLite's busy handler, which
        # sleeps and retries (1, 2, 5 ... 100 ms) and leaves the lock idle meanwhile.
        self._write_lock: threading.RLock | None = threading.RLock() if self.dialect == "sqlite" else None
        self._batch_names: dict[int, str] = {}
        self._batch_lock = threading.Lock()

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def require_existing(self) -> None:
        """Refuse (``SchemaOutOfDate``, exit 2) a SQLite file that does not exist, before any
        connection would create an empty one: only ``db upgrade`` creates a database. The
        message names the path, resolved, since a relative URL means the working directory."""
        path = sqlite_file(self.url)
        if path is not None and not path.exists():
            raise SchemaOutOfDate(
                f"there is no database at {path.resolve()} (database.url {self.where}): {CREATE_HINT}, "
                "or set database.url (PEPPOL_MIGRATE_DATABASE__URL) to the existing one"
            )

    @property
    def where(self) -> str:
        """The URL without its password, for messages and logs."""
        return self.url.render_as_string(hide_password=True)

    @contextmanager
    def translate(self, action: str) -> Iterator[None]:
        """Turn SQLAlchemy's errors into the store's, keeping the cause."""
        try:
            yield
        except IntegrityError as exc:
            if _unique_party_violation(exc):
                raise ActiveMigrationExists(
                    f"{action}: a party already has an open migration ({_reason(exc)})"
                ) from exc
            raise StoreError(f"{action}: the database refused it: {_reason(exc)}") from exc
        except SQLAlchemyError as exc:
            raise StoreError(f"{action}: {_reason(exc)}") from exc

    @contextmanager
    def read(self, action: str) -> Iterator[Connection]:
        """A short read transaction."""
        with self.translate(action), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def write(self, action: str) -> Iterator[Connection]:
        """A short write transaction (``BEGIN IMMEDIATE`` on SQLite); commits on success."""
        if self._write_lock is None:
            with self.translate(action), self._write_engine.begin() as conn:
                conn.info[AUDIT_KEY_INFO] = self.audit_key  # for the audit events this write appends
                yield conn
            return
        with self._write_lock, self.translate(action), self._write_engine.begin() as conn:
            conn.info[AUDIT_KEY_INFO] = self.audit_key
            yield conn

    def batch_name(self, conn: Connection, batch_id: int | None) -> str | None:
        """A batch's name; names never change, so they are cached for the records' sake."""
        if batch_id is None:
            return None
        name = self._batch_names.get(batch_id)
        if name is None:
            name = conn.execute(select(batches.c.name).where(batches.c.id == batch_id)).scalar_one()
            with self._batch_lock:
                self._batch_names[batch_id] = name
        return name

    def remember_batch(self, batch_id: int, name: str) -> None:
        with self._batch_lock:
            self._batch_names[batch_id] = name

    def dispose(self) -> None:
        self.engine.dispose()
