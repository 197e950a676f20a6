"""`status` on a real store, SQLite and PostgreSQL alike (the db_url fixture): the figures are
aggregate queries per batch, and the overview reads them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from migration_engine.backoffice import overview
from migration_engine.errors import InputError
from migration_engine.machine import Direction, State
from migration_engine.store import NewMigration
from tests.support.records import add, change, party

IN, OUT = Direction.TO_ECONNECT, Direction.FROM_ECONNECT


def test_status_figures_are_aggregates_per_batch(store, clock):
    add(store, "a", *(NewMigration(party_id=party(i), direction=OUT, state=State.REQUESTED) for i in range(6)))
    add(store, "b", NewMigration(party_id=party(10), direction=IN, state=State.REQUESTED))
    clock.advance(60)
    change(store, 0, new_state=State.COMPLETED)  # an hour and more before `now`
    clock.advance(2 * 3600)
    change(store, 1, new_state=State.COMPLETED)
    change(store, 2, new_state=State.NEEDS_ATTENTION, last_error="gone", last_error_code="API404")
    change(store, 3, attempts=2, last_error="503", last_error_code="HTTP503")  # retrying
    change(store, 4, paused=True, last_error="old", last_error_code="OLD")  # an old error, not retrying
    change(store, 5, new_state=State.CANCELLED, paused=True)  # paused but finished: not counted

    figures = store.status_figures(batch_name="a", since=clock.now() - timedelta(hours=1))
    assert figures.paused == 1
    assert figures.completed_since == 1
    assert figures.errors_by_code == {"API404": 1, "HTTP503": 1}
    assert figures.oldest_waiting is not None
    assert (figures.oldest_waiting.party_id, figures.oldest_waiting.state) == (party(2), State.NEEDS_ATTENTION)

    everything = store.status_figures(since=clock.now() - timedelta(hours=3))
    assert everything.completed_since == 2
    assert everything.oldest_waiting is not None and everything.oldest_waiting.party_id == party(10)
    assert store.status_figures(batch_name="nope", since=clock.now()).oldest_waiting is None

    data = overview.status(store, batch_name="a", now=clock.now())
    assert data["throughput_last_hour"] == 1 and data["paused"] == 1
    assert data["errors_by_code"] == {"API404": 1, "HTTP503": 1}
    assert data["oldest_waiting"]["party_id"] == party(2)


def test_status_of_an_unknown_batch_is_refused_not_done(store, clock):
    """A mistyped batch name selects nothing; "0 of 0, 100% done" would read as a finished batch."""
    add(store, "spring", NewMigration(party_id=party(1), direction=OUT, state=State.REQUESTED))
    with pytest.raises(InputError, match="no batch named 'sprnig'"):
        overview.status(store, batch_name="sprnig", now=clock.now())
    assert overview.status(store, batch_name="spring", now=clock.now())["percent_done"] == 0.0
    assert overview.status(store, now=clock.now())["total"] == 1  # no batch named: every batch
