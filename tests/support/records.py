"""Migrations written straight into a store, for tests of what reads or moves them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from migration_engine.keys import KeyVault
from migration_engine.machine import Direction, State
from migration_engine.store import Change, EventIn, MigrationRecord, NewMigration, Store

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # a ManualClock's default start


def migration_record(**fields: Any) -> MigrationRecord:
    """A ``MigrationRecord`` without a store, for tests of what reads one: every field has a plain
    default (migration 1 of batch b, party 0106:12345678, inbound, requested, version 1, nothing
    leased, no error, created at ``START``); ``fields`` override them."""
    values: dict[str, Any] = dict(
        id=1,
        batch_id=1,
        batch_name="b",
        party_id="0106:12345678",
        direction=Direction.TO_ECONNECT,
        state=State.REQUESTED,
        version=1,
        profile="default",
        name="Party",
        new_provider=None,
        key_ciphertext=None,
        key_issued_at=None,
        next_run_at=None,
        attempts=0,
        lease_owner=None,
        lease_until=None,
        paused=False,
        last_error=None,
        last_error_code=None,
        failed_state=None,
        deadline_at=None,
        created_at=START,
        updated_at=START,
        completed_at=None,
    )
    values.update(fields)
    return MigrationRecord(**values)


def sealed(vault: KeyVault, keys: Mapping[str, str]) -> Callable[[int, str], str | None]:
    """A ``seal`` for ``Store.add_migrations``: each party's key in ``keys``, sealed for the
    migration the store just allocated for it (keys are bound to their migration id)."""

    def seal(migration_id: int, party_id: str) -> str | None:
        key = keys.get(party_id)
        return None if key is None else vault.encrypt(key, migration_id=migration_id, party_id=party_id)

    return seal


def party(i: int) -> str:
    """The i-th party id of these helpers (0106, KVK numbers from 20000000)."""
    return f"0106:{20000000 + i}"


def add(store: Store, batch: str, *items: NewMigration) -> None:
    """Import ``items`` as the batch ``batch``."""
    store.add_migrations(batch_name=batch, items=items, actor="tester")


def change(store: Store, i: int, **fields: Any) -> None:
    """Apply ``fields`` (``new_state``, ``paused``, ...) to party(i)'s migration, as worker w1 would."""
    record = store.find_party(party(i))[0]
    events = [EventIn(kind="transition", actor="w1", from_state=record.state, to_state=fields.get("new_state"))]
    applied = store.apply(
        Change(
            migration_id=record.id,
            expected_state=record.state,
            expected_version=record.version,
            **fields,
            events=events,
        )
    )
    assert applied is not None
