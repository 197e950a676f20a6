"""The recorder: group commit on a real SQLite store, and its fallbacks when a batch fails."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from migration_engine.clock import ManualClock
from migration_engine.engine.recorder import Recorded, Recorder
from migration_engine.machine import Direction, State
from migration_engine.store import Change, EventIn, MigrationRecord, NewMigration, Store
from tests.support import TEST_AUDIT_KEY


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'recorder.db'}", clock=ManualClock(), audit_key=TEST_AUDIT_KEY)
    store.upgrade()
    yield store
    store.close()


def claimed(store: Store, n: int) -> list[MigrationRecord]:
    now = store.clock.now()
    store.add_migrations(
        batch_name="b",
        items=[
            NewMigration(party_id=f"0106:{10000000 + i}", direction=Direction.FROM_ECONNECT, state=State.REQUESTED,
                         next_run_at=now)
            for i in range(n)
        ],
        actor="test",
    )
    return store.claim_due(worker_id="w", limit=n, lease_s=60)


def change(record: MigrationRecord, **detail: Any) -> Change:
    """A wait (same state, nothing scheduled) with one observation event carrying ``detail``."""
    event = EventIn(kind="observation", actor="w", from_state=record.state, to_state=record.state, detail=detail)
    return Change(
        migration_id=record.id,
        expected_state=record.state,
        expected_version=record.version,
        lease_owner="w",
        next_run_at=None,
        events=[event],
    )


class Reports:
    """Collects what ``on_recorded`` reports; can hold the recorder thread in its first report,
    so that the changes submitted meanwhile are recorded together, as one batch."""

    def __init__(self, *, hold_first: bool = False, fail_first: bool = False) -> None:
        self.batches: list[list[Recorded]] = []
        self.first_reported = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()
        self._fail_first = fail_first
        self._cond = threading.Condition()

    def __call__(self, results: list[Recorded]) -> None:
        with self._cond:
            self.batches.append(results)
            self._cond.notify_all()
        first = not self.first_reported.is_set()
        self.first_reported.set()
        assert self.release.wait(30), "the test never released the recorder"
        if first and self._fail_first:
            raise RuntimeError("a bug in the callback")

    def wait_for(self, n: int) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: sum(map(len, self.batches)) >= n, timeout=30)

    def by_id(self) -> dict[int, Recorded]:
        return {item[0].id: item for batch in self.batches for item in batch}


def test_waiting_changes_are_recorded_together(store: Store) -> None:
    records = claimed(store, 4)
    reports = Reports(hold_first=True)
    recorder = Recorder(apply_many=store.apply_many, on_recorded=reports)
    recorder.submit(records[0], change(records[0]))
    assert reports.first_reported.wait(30)
    for record in records[1:]:
        recorder.submit(record, change(record))
    assert recorder.pending() == 3
    reports.release.set()
    recorder.close()
    assert [len(batch) for batch in reports.batches] == [1, 3]  # one commit for the three that waited
    assert all(applied is not None and error is None for batch in reports.batches for _, applied, error in batch)
    assert recorder.pending() == 0


def test_a_failing_batch_is_retried_change_by_change(store: Store) -> None:
    records = claimed(store, 4)
    reports = Reports(hold_first=True)
    recorder = Recorder(apply_many=store.apply_many, on_recorded=reports)
    recorder.submit(records[0], change(records[0]))
    assert reports.first_reported.wait(30)
    good1, bad, good2 = records[1:]
    recorder.submit(good1, change(good1))
    recorder.submit(bad, change(bad, oops=object()))  # not JSON: the store refuses the whole transaction
    recorder.submit(good2, change(good2))
    reports.release.set()
    recorder.close()

    assert [len(batch) for batch in reports.batches] == [1, 1, 1, 1]  # the batch of three, one by one
    shown = reports.by_id()
    assert shown[bad.id][1] is None and isinstance(shown[bad.id][2], ValueError)
    for record in (good1, good2):
        _, applied, error = shown[record.id]
        assert error is None and applied is not None and applied.version == record.version + 1
    stored_bad = store.get(bad.id)
    assert stored_bad is not None and stored_bad.version == bad.version  # nothing of it was written
    assert [e.kind for e in store.events(good2.id)][-1] == "observation"


def test_an_exception_in_the_callback_does_not_stop_recording(store: Store) -> None:
    first, second = claimed(store, 2)
    reports = Reports(fail_first=True)
    recorder = Recorder(apply_many=store.apply_many, on_recorded=reports)
    recorder.submit(first, change(first))
    reports.wait_for(1)
    recorder.submit(second, change(second))
    reports.wait_for(2)
    recorder.close()
    for record in (first, second):
        stored = store.get(record.id)
        assert stored is not None and stored.version == record.version + 1


def test_close_records_everything_queued(store: Store) -> None:
    records = claimed(store, 20)
    reports = Reports()
    recorder = Recorder(apply_many=store.apply_many, on_recorded=reports, max_batch=4)
    for record in records:
        recorder.submit(record, change(record))
    recorder.close()
    assert sorted(reports.by_id()) == sorted(r.id for r in records)
    assert max(len(batch) for batch in reports.batches) <= 4
    assert recorder.pending() == 0
    assert all(s.lease_owner is None for s in store.list_migrations())  # recorded: the leases have ended
