"""Migrations written straight into a store, for tests of what reads or moves them."""

from __future__ import annotations

from typing import Any

from migration_engine.store import Change, EventIn, NewMigration, Store


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
