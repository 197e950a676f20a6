"""The schema's version: Alembic, configured in code (no alembic.ini).

``upgrade`` runs the revisions in ``migrations_db/versions`` to head in one transaction
(PostgreSQL and, thanks to the store's own BEGIN, SQLite too); it alone creates a SQLite
file. ``check_schema`` refuses a missing SQLite file (before connecting, which would create an
empty one), an unreachable database, and one that is not at head, so no command runs against
a schema it does not understand. ``current`` and ``history`` are `db current` and `db history`.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text

from migration_engine.errors import ConfigError, SchemaOutOfDate, StoreError
from migration_engine.store.database import Database, unreachable
from migration_engine.store.schema import metadata

if TYPE_CHECKING:
    from alembic.config import Config

UPGRADE_HINT = "run `peppol-migrate db upgrade`"

# The newest revision in migrations_db/versions; a test keeps it equal to Alembic's head. Every
# command checks the schema, and a database at this revision is checked without importing
# Alembic (about 150 ms of a `status` that should take well under a second on 100k rows).
SCHEMA_HEAD = "0013"
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
        # Revisions that re-chain the audit trail (0003) need its key; None when not configured.
        config.attributes["audit_key"] = db.audit_key
        command.upgrade(config, "head")


def _read_version(db: Database, action: str) -> tuple[set[str], frozenset[str]]:
    """The database's tables and Alembic revision(s); a missing SQLite file or an unreachable
    database is refused with exit 2, naming where it looked (never creating anything)."""
    db.require_existing()
    try:
        with db.read(action) as conn:
            tables = set(inspect(conn).get_table_names())
            current: frozenset[str] = frozenset()
            if VERSION_TABLE in tables:
                current = frozenset(conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())
    except StoreError as exc:
        if not unreachable(exc):
            raise
        reason = str(exc).partition(": ")[2] or str(exc)
        raise ConfigError(
            f"cannot reach the database {db.where}: {reason}; check database.url (PEPPOL_MIGRATE_DATABASE__URL), "
            f"and once the database exists, {UPGRADE_HINT}"
        ) from None
    return tables, current


def check_schema(db: Database) -> None:
    """Raise ``SchemaOutOfDate`` unless the database is at this code's head revision."""
    tables, current = _read_version(db, "check the schema version")
    where = db.where
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


@dataclass(frozen=True)
class Revision:
    """One schema revision, for `db history`."""

    revision: str
    down_revision: str | None
    doc: str
    is_head: bool
    is_current: bool


def current(db: Database) -> tuple[frozenset[str], frozenset[str]]:
    """`db current`: the database's revision(s) (empty: no schema yet) and this code's head(s)."""
    _, revisions = _read_version(db, "read the schema version")
    return revisions, head_revisions()


def history(db: Database | None) -> list[Revision]:
    """`db history`: every revision this code knows, newest first; marked current when ``db``
    (which may be None: no database to ask) is at it."""
    from alembic.script import ScriptDirectory

    at = current(db)[0] if db is not None else frozenset()
    heads = head_revisions()
    out = []
    for rev in ScriptDirectory.from_config(alembic_config()).walk_revisions():
        down = rev.down_revision
        out.append(
            Revision(
                revision=rev.revision,
                down_revision=down if isinstance(down, str) or down is None else ",".join(down),
                doc=(rev.doc or "").strip(),
                is_head=rev.revision in heads,
                is_current=rev.revision in at,
            )
        )
    return out
