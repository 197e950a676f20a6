"""The SQLite file holds every party's sealed keys and audit trail: it and its WAL and shared
memory files must be readable by their owner only, whatever the umask, and an operator's
own choice of mode on an existing file is kept."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from migration_engine.clock import ManualClock
from migration_engine.store import Store
from tests.support import TEST_AUDIT_KEY
from tests.support.cli import peppol_migrate


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The common 022 umask, under which sqlite3 alone would create the file 0644."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_db_upgrade_and_a_write_leave_the_database_and_its_wal_and_shm_0600(tmp_path: Path, open_umask: None) -> None:
    db = tmp_path / "engine.db"
    url = f"sqlite:///{db}"
    upgraded = peppol_migrate("db", "upgrade", env={"PEPPOL_MIGRATE_DATABASE__URL": url}, cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr

    store = Store(url, clock=ManualClock(), audit_key=TEST_AUDIT_KEY)
    try:
        batch_id = store.ensure_batch("spring", source="spring.csv")
        assert store.ensure_batch("spring") == batch_id  # the write is there to read back
        # Checked while the store is open: the WAL and shm files exist only while connected.
        files = {p.name: mode(p) for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm"))}
    finally:
        store.close()
    assert files == {"engine.db": 0o600, "engine.db-wal": 0o600, "engine.db-shm": 0o600}


def test_an_existing_database_keeps_the_mode_its_operator_gave_it(tmp_path: Path, open_umask: None) -> None:
    db = tmp_path / "shared.db"
    first = Store(f"sqlite:///{db}", clock=ManualClock(), audit_key=TEST_AUDIT_KEY)
    first.upgrade()
    first.close()
    db.chmod(0o640)  # e.g. readable by a reporting group, on purpose
    store = Store(f"sqlite:///{db}", clock=ManualClock(), audit_key=TEST_AUDIT_KEY)
    try:
        store.ensure_batch("b1")
    finally:
        store.close()
    assert mode(db) == 0o640
