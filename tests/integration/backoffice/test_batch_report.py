"""The batch report on a real store, SQLite and PostgreSQL alike (the db_url fixture): a batch's
info, and each migration's failed tries counted from its error events."""

from __future__ import annotations

import pytest

from migration_engine.backoffice.batch_report import build
from migration_engine.errors import InputError
from migration_engine.machine import Direction, State
from migration_engine.store import Change, EventIn, NewMigration
from tests.support.records import add, party

OUT = Direction.FROM_ECONNECT


def test_batch_info_and_failed_tries(store, clock):
    assert store.batch_info("spring") is None
    add(store, "spring", NewMigration(party_id=party(1), direction=OUT, state=State.REQUESTED))
    info = store.batch_info("spring")
    assert info is not None and info.name == "spring" and info.created_at == clock.now()
    record = store.find_party(party(1))[0]
    for n in range(3):
        store.apply(
            Change(
                migration_id=record.id,
                expected_state=record.state,
                expected_version=record.version + n,
                attempts=n + 1,
                events=[EventIn(kind="error", actor="w1", from_state=record.state, to_state=record.state)],
            )
        )
    assert store.error_event_counts([record.id, 999]) == {record.id: 3}
    rows = list(build(store, batch_name="spring", now=clock.now()).rows())
    assert [(r["party_id"], r["attempts"], r["failed_tries"]) for r in rows] == [(party(1), 3, 3)]
    with pytest.raises(InputError, match="no batch named"):
        build(store, batch_name="autumn", now=clock.now())
