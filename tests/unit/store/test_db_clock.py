"""The database's clock (store/db_clock.py): its offset measurement, scripted. The host is a
ManualClock and the "server" reads its time off it with a fixed offset, each read taking a
scripted round trip of host time, so nothing here sleeps or touches a database."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import pytest

from migration_engine.clock import ManualClock
from migration_engine.errors import StoreError
from migration_engine.store.db_clock import DatabaseClock

LOGGER = "migration_engine.store.db_clock"


class Server:
    """A database server whose clock is ``behind_s`` behind the host's wall clock; a read takes
    ``there`` seconds of host time before the server reads its clock and ``back`` after."""

    def __init__(self, host: ManualClock, *, behind_s: float, trips: list[tuple[float, float]] | None = None) -> None:
        self.host = host
        self.behind_s = behind_s
        self.trips = list(trips or [])
        self.reads = 0
        self.down = False

    def true_time(self) -> datetime:
        return self.host.now() - timedelta(seconds=self.behind_s)

    def read(self) -> datetime:
        self.reads += 1
        if self.down:
            raise StoreError("read the database's time: connection refused")
        there, back = self.trips.pop(0) if self.trips else (0.001, 0.001)
        self.host.advance(there)
        value = self.true_time()
        self.host.advance(back)
        return value


def setup(behind_s: float, trips: list[tuple[float, float]] | None = None) -> tuple[ManualClock, Server, DatabaseClock]:
    host = ManualClock()
    server = Server(host, behind_s=behind_s, trips=trips)
    return host, server, DatabaseClock(host, server.read, every_s=60.0, retry_s=5.0, samples=3)


def error_s(clock: DatabaseClock, server: Server) -> float:
    return abs((clock.now() - server.true_time()).total_seconds())


@pytest.mark.parametrize("behind_s", [60.0, -60.0, 0.0])
def test_now_is_the_databases_time_whatever_the_hosts_wall_clock_says(behind_s: float) -> None:
    host, server, clock = setup(behind_s)
    assert error_s(clock, server) < 1e-6
    assert clock.skew_s == pytest.approx(behind_s, abs=1e-6)
    host.advance(42.5)  # the host's monotonic clock carries the database's time forward
    assert error_s(clock, server) < 1e-6
    assert abs((clock.now() - host.now()).total_seconds() + behind_s) < 1e-6


def test_the_shortest_round_trip_wins_and_half_of_it_bounds_the_error() -> None:
    # The second read is the quickest (60 ms) but lopsided: the server read its clock 10 ms in.
    _, server, clock = setup(60.0, trips=[(0.4, 0.1), (0.01, 0.05), (0.2, 0.2)])
    clock.now()
    assert server.reads == 3
    assert clock.uncertainty_s == pytest.approx(0.03)
    # The midpoint guess is 20 ms off, inside the ±30 ms the round trip allows.
    assert error_s(clock, server) == pytest.approx(0.02)
    assert clock.uncertainty_s is not None and error_s(clock, server) <= clock.uncertainty_s


def test_no_round_trip_until_the_offset_is_due_again_and_then_it_follows_the_database() -> None:
    host, server, clock = setup(60.0)
    clock.now()
    assert server.reads == 3
    host.advance(59.0)
    for _ in range(100):
        clock.now()
    assert server.reads == 3  # the hot path reads the host's monotonic clock only
    server.behind_s = 30.0  # the database's clock was corrected meanwhile
    assert error_s(clock, server) == pytest.approx(30.0, abs=0.01)  # not measured yet
    host.advance(1.0)
    assert error_s(clock, server) < 1e-6
    assert server.reads == 6
    assert clock.skew_s == pytest.approx(30.0)


def test_a_skew_over_a_second_is_warned_about_with_its_size_once_per_change(caplog: pytest.LogCaptureFixture) -> None:
    host, server, clock = setup(60.0)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        clock.now()
        host.advance(60.0)
        clock.now()  # the same skew again: no second warning
        server.behind_s = 62.5
        host.advance(60.0)
        clock.now()
        server.behind_s = -0.2
        host.advance(60.0)
        clock.now()
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]
    assert [level for level, _ in lines] == [logging.WARNING, logging.WARNING, logging.INFO]
    assert "60.000 s" in lines[0][1] and "ahead of the database's" in lines[0][1]
    assert "62.500 s" in lines[1][1]
    assert "within 1 s of the database's again" in lines[2][1]


def test_a_host_behind_is_warned_about_and_a_small_skew_is_not(caplog: pytest.LogCaptureFixture) -> None:
    _, _, behind = setup(-5.0)
    _, _, close = setup(0.3)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        behind.now()
        close.now()
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(lines) == 1 and "5.000 s" in lines[0] and "behind the database's" in lines[0]


def test_a_slow_round_trip_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    _, _, clock = setup(0.0, trips=[(1.5, 1.5)] * 3)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        clock.now()
    assert [r.getMessage() for r in caplog.records if r.name == LOGGER] == [
        "the database's time is known only to ±1.500 s: its round trip took 3.000 s"
    ]


def test_an_unreadable_database_leaves_the_host_clock_or_the_last_anchor_and_is_tried_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    host, server, clock = setup(60.0)
    server.down = True
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert clock.now() == host.now()  # nothing measured yet: the host's clock
        assert clock.now() == host.now()
        assert clock.skew_s is None
    assert server.reads == 1  # not again before the retry
    assert "cannot read the database's time" in caplog.records[-1].getMessage()
    host.advance(5.0)
    clock.now()
    assert server.reads == 2
    server.down = False
    host.advance(5.0)
    assert error_s(clock, server) < 1e-6  # measured at last
    server.down = True
    host.advance(60.0)
    assert error_s(clock, server) < 1e-6  # the last anchor carries on through an outage
    assert server.reads == 6


def test_skip_to_is_on_the_databases_time() -> None:
    host, server, clock = setup(60.0)
    target = clock.now() + timedelta(hours=1)
    clock.skip_to(target)
    assert clock.now() >= target
    assert error_s(clock, server) < 1e-6
    before = host.now()
    clock.skip_to(clock.now() - timedelta(seconds=10))  # the past: nothing moves
    assert host.now() == before


def test_bad_parameters_are_refused() -> None:
    host = ManualClock()
    with pytest.raises(ValueError):
        DatabaseClock(host, host.now, samples=0)
    with pytest.raises(ValueError):
        DatabaseClock(host, host.now, every_s=0)
