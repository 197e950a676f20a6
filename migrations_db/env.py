"""Alembic's environment for peppol-migrate's schema.

``Store.upgrade`` passes its own connection (already inside a transaction) in
``config.attributes["connection"]``, so the revisions run on the store's engine with its
SQLite settings, all in one transaction. Without one (plain ``alembic`` use), an engine is
built from ``sqlalchemy.url``. ``--sql`` (offline) mode renders the SQL for a DBA.

``config.attributes["audit_key"]`` is the audit trail's HMAC key (setting ``audit.key``), which
revision 0003 re-chains the existing events under; ``Store.upgrade`` passes it, plain ``alembic``
use takes it from ``PEPPOL_MIGRATE_AUDIT__KEY``. A revision that needs it and finds none refuses.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection, create_engine
from sqlalchemy.pool import NullPool

from migration_engine.store.schema import metadata

config = context.config
config.attributes.setdefault("audit_key", os.environ.get("PEPPOL_MIGRATE_AUDIT__KEY") or None)


def _configure_and_run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite alters tables by copying them; batch mode does that for future revisions.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: pass a connection in config.attributes or set sqlalchemy.url")
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            _configure_and_run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
