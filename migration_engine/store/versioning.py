"""The schema's version: Alembic, configured in code (no alembic.ini).

``upgrade`` runs the revisions in ``migrations_db/versions`` to head in one transaction
(PostgreSQL and, thanks to the store's own BEGIN, SQLite too). ``check_schema`` refuses a
database that is not at head, so no command runs against a schema it does not understand.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text

from migration_engine.errors import SchemaOutOfDate, StoreError
from migration_engine.store.database import Database
from migration_engine.store.schema import metadata

if TYPE_CHECKING:
    from alembic.config import Config

UPGRADE_HINT = "run `peppol-migrate db upgrade`"

# The newest revision in migrations_db/versions; a test keeps it equal to Alembic's head. Every
# command checks the schema, and a database at this revision is checked without importing
# Alembic (about 150 ms of a `status` that should take well under a second on 100k rows).
SCHEMA_HEAD = "0002"
VERSION_TABLE = "alembic_version"  # Alembic's default; migrations_db/env.py keeps it


def script_location() -> Path:
    """The ``migrations_db`` package's directory (a regular package, or seen as a namespace
    package by a stale editable install: its first real directory holding ``env.py``).

    Found as data, not imported: Alembic loads ``env.py`` from there, and ``env.py`` imports the
    store's schema, so an import here would make the store and its revisions import each other.
    """
    spec = importlib.util.find_spec("migrations_db")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for entry in folders:
        path = Path(entry)
        if (path / "env.py").is_file():
            return path
    raise StoreError(f"the Alembic environment (migrations_db/env.py) is missing from {folders}")


def alembic_config() -> Config:
    """An Alembic config in code (no alembic.ini): revisions from the ``migrations_db`` package."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(script_location()))
    return config


@cache
def head_revisions() -> frozenset[str]:
    from alembic.script import ScriptDirectory

    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


@cache
def _known_revisions() -> frozenset[str]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    return frozenset(rev.revision for rev in script.walk_revisions())


def upgrade(db: Database) -> None:
    """Create or upgrade the schema to head (an empty SQLite file or PostgreSQL database too)."""
    from alembic import command

    config = alembic_config()
    with db.translate("upgrade the schema"), db.engine.begin() as conn:
        # env.py runs on this connection, inside this transaction: all revisions or none.
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def check_schema(db: Database) -> None:
    """Raise ``SchemaOutOfDate`` unless the database is at this code's head revision."""
    with db.read("check the schema version") as conn:
        tables = set(inspect(conn).get_table_names())
        current: frozenset[str] = frozenset()
        if VERSION_TABLE in tables:
            current = frozenset(conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())
    where = db.url.render_as_string(hide_password=True)
    if not current:
        raise SchemaOutOfDate(f"the database {where} has no peppol-migrate schema: {UPGRADE_HINT}")
    if current != {SCHEMA_HEAD}:  # only now ask Alembic which revisions exist
        _refuse_revision(where, current)
    missing = sorted(set(metadata.tables) - tables)
    if missing:
        raise SchemaOutOfDate(f"the database {where} lacks the tables {', '.join(missing)}: {UPGRADE_HINT}")


def _refuse_revision(where: str, current: frozenset[str]) -> None:
    unknown = current - _known_revisions()
    if unknown:
        raise SchemaOutOfDate(
            f"the database {where} is at schema revision {', '.join(sorted(unknown))}, newer than this "
            "peppol-migrate knows: upgrade peppol-migrate"
        )
    heads = head_revisions()
    if current != heads:
        raise SchemaOutOfDate(
            f"the database {where} is at schema revision {', '.join(sorted(current))}, this peppol-migrate "
            f"needs {', '.join(sorted(heads))}: {UPGRADE_HINT}"
        )
