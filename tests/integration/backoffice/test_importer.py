"""The import on a real store, SQLite and PostgreSQL alike (the db_url fixture): an import refused
or broken off while it writes leaves nothing behind, not even an empty batch.

The batch is read twice (validate, then write). Between the two, the import tells its progress
listener that it starts ``writing``: the listeners below use that moment to do what a concurrent
import or a crash would, with no stand-in for any part of the engine.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest

from migration_engine.backoffice.importer import import_file
from migration_engine.clock import ManualClock
from migration_engine.engine.runtime import Runtime
from migration_engine.errors import ActiveMigrationExists
from migration_engine.machine import Direction, State
from migration_engine.store import NewMigration
from tests.support import PROVIDER, engine_settings, kvk

UNUSED_PSB = "http://127.0.0.1:9"  # the import never calls the PSB


def write_batch(path: Path, parties: list[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["party_id", "direction", "migration_key", "profile", "name", "new_provider"])
        for party in parties:
            writer.writerow([party, "from-econnect", "", "", f"Name {party}", PROVIDER])


@pytest.fixture
def rt(db_url: str, clock: ManualClock) -> Iterator[Runtime]:
    runtime = Runtime(engine_settings(db_url, UNUSED_PSB), clock=clock)
    runtime.store.upgrade()
    yield runtime
    runtime.close()


class RacingImport:
    """A progress listener that, as the write starts, imports one of the same parties elsewhere:
    what a second operator's import does when it commits between this one's check and write."""

    def __init__(self, rt: Runtime, party: str) -> None:
        self._rt, self._party = rt, party
        self.done = 0

    def phase(self, name: str) -> None:
        if name == "writing":
            item = NewMigration(party_id=self._party, direction=Direction.FROM_ECONNECT, state=State.REQUESTED)
            self._rt.store.add_migrations(batch_name="other", items=[item], actor="someone-else")

    def advance(self, rows: int) -> None:
        self.done += rows


class Crash(Exception):
    """The import's process dying midway (Ctrl-C, a lost connection), as an exception."""


class CrashWhileWriting:
    """A progress listener that breaks the import off once the write has begun (after 500 rows)."""

    def __init__(self) -> None:
        self.done = 0
        self._writing = False

    def phase(self, name: str) -> None:
        self._writing = name == "writing"

    def advance(self, rows: int) -> None:
        if self._writing:
            raise Crash("midway")
        self.done += rows


def test_an_import_refused_while_writing_leaves_no_batch(rt: Runtime, tmp_path: Path) -> None:
    parties = [kvk(i) for i in range(3)]
    write_batch(tmp_path / "spring.csv", parties)
    with pytest.raises(ActiveMigrationExists, match=parties[1]):
        import_file(
            rt,
            path=tmp_path / "spring.csv",
            batch_name="spring",
            dry_run=False,
            actor="alice",
            progress=RacingImport(rt, parties[1]),
        )
    assert rt.store.batch_info("spring") is None
    assert rt.store.batch_info("other") is not None  # the racing import itself went in
    assert [r.batch_name for p in parties for r in rt.store.find_party(p)] == ["other"]


def test_an_import_that_crashes_midway_leaves_no_batch(rt: Runtime, tmp_path: Path) -> None:
    parties = [kvk(i) for i in range(600)]  # more than the 500 rows after which progress is told
    write_batch(tmp_path / "spring.csv", parties)
    with pytest.raises(Crash):
        import_file(
            rt,
            path=tmp_path / "spring.csv",
            batch_name="spring",
            dry_run=False,
            actor="alice",
            progress=CrashWhileWriting(),
        )
    assert rt.store.batch_info("spring") is None
    assert list(rt.store.list_migrations(batch_name="spring")) == []


def test_a_good_import_creates_its_batch_with_its_source(rt: Runtime, tmp_path: Path) -> None:
    write_batch(tmp_path / "spring.csv", [kvk(1), kvk(2)])
    plan = import_file(rt, path=tmp_path / "spring.csv", batch_name=None, dry_run=False, actor="alice")
    assert plan["imported"] == 2 and plan["batch"] == "spring"
    info = rt.store.batch_info("spring")
    assert info is not None and info.source == str(tmp_path / "spring.csv")
