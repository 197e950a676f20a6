"""The shared budgets' local half (limiter.py): the reservation arithmetic, the block a process
hands to its threads, and what the PSB client and the lookups do with it. ManualClock; the
database is stood in for by ``Ledger`` (the same arithmetic, in memory); the store's own
reservation is tests/integration/store/test_budgets.py."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading

import httpx
import pytest

from migration_engine.clock import ManualClock
from migration_engine.errors import NetworkLookupError, PsbTransientError
from migration_engine.limiter import (
    NAME_MAX,
    BudgetUnavailable,
    SharedBudgets,
    SharedLimiter,
    block_size,
    budget_name,
    reserve_slots,
)
from migration_engine.peppol.limits import Limiter
from migration_engine.peppol.smp import is_technical
from migration_engine.psb.client import PsbClient


class StillClock(ManualClock):
    """Sleeps are recorded, not slept: each acquire shows the wait it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


class Ledger:
    """What the database holds of the budgets, in memory: ``reserve_slots`` per name, atomically."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.next_free: dict[str, float] = {}
        self.reservations: list[tuple[str, int, float]] = []
        self.down = False
        self._lock = threading.Lock()

    def reserve(self, name: str, count: int, rate: float) -> float:
        if self.down:
            raise BudgetUnavailable("the database: connection refused")
        with self._lock:
            start, self.next_free[name] = reserve_slots(
                self.next_free.get(name, 0.0), self.clock.now().timestamp(), count, rate
            )
            self.reservations.append((name, count, start))
            return start


# ---- the arithmetic ----------------------------------------------------------------------------


@pytest.mark.parametrize(("rate", "block"), [(20, 4), (2, 1), (0.5, 1), (100, 20), (10, 2), (7.5, 1)])
def test_a_block_is_a_fifth_of_a_second_of_budget_at_least_one_slot(rate: float, block: int) -> None:
    assert block_size(rate) == block


@pytest.mark.parametrize(("rate", "block_s"), [(0, 0.2), (-1, 0.2), (1, 0)])
def test_a_block_needs_a_rate_and_a_time(rate: float, block_s: float) -> None:
    with pytest.raises(ValueError):
        block_size(rate, block_s)


def test_an_idle_budget_starts_now_and_saves_nothing_up() -> None:
    assert reserve_slots(next_free=100.0, now=250.0, count=4, rate=20) == (250.0, 250.2)


def test_a_busy_budget_queues_the_block_behind_what_is_reserved() -> None:
    assert reserve_slots(next_free=300.0, now=250.0, count=4, rate=20) == (300.0, 300.2)
    with pytest.raises(ValueError):
        reserve_slots(next_free=0.0, now=1.0, count=0, rate=20)


def test_budget_names() -> None:
    assert budget_name("psb") == "psb"
    assert budget_name("smp", "https://smp.example/") == "smp https://smp.example"
    long = budget_name("smp", "https://" + "b" * 300)
    assert long.startswith("smp sha256:") and len(long) <= NAME_MAX
    assert long == budget_name("smp", "https://" + "b" * 300)
    with pytest.raises(ValueError, match="unknown budget"):
        budget_name("sml")


# ---- one process ------------------------------------------------------------------------------


def test_one_process_spaces_its_calls_and_reserves_a_block_at_a_time() -> None:
    clock = ManualClock()
    ledger = Ledger(clock)
    limiter = SharedLimiter("psb", rate=20, clock=clock, reserve=ledger.reserve)
    t0 = clock.now().timestamp()
    times = []
    for _ in range(8):
        limiter.acquire()
        times.append(round(clock.now().timestamp() - t0, 6))
    assert times == [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35]
    assert [count for _, count, _ in ledger.reservations] == [4, 4]  # two round trips for eight calls
    assert limiter.stats()["reservations"] == 2 and limiter.stats()["calls"] == 8


def test_a_slot_come_for_too_late_is_dropped_not_used() -> None:
    clock = ManualClock()
    ledger = Ledger(clock)
    limiter = SharedLimiter("psb", rate=20, clock=clock, reserve=ledger.reserve)
    assert limiter.acquire() == 0.0
    clock.advance(0.12)  # the block's 2nd slot (0.05) is more than an interval past; its 3rd (0.10) is not
    assert limiter.acquire() == 0.0
    assert limiter.dropped == 1 and len(ledger.reservations) == 1
    clock.advance(5)  # the rest of the block is long past: a new block, starting now
    assert limiter.acquire() == 0.0
    assert len(ledger.reservations) == 2 and ledger.reservations[1][2] == clock.now().timestamp()
    assert limiter.dropped == 2


def test_threads_of_a_process_get_distinct_slots() -> None:
    clock = StillClock()
    ledger = Ledger(clock)
    limiter = SharedLimiter("psb", rate=10, clock=clock, reserve=ledger.reserve)
    start = threading.Barrier(12)

    def work() -> None:
        start.wait()
        limiter.acquire()

    threads = [threading.Thread(target=work) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(round(s, 6) for s in clock.sleeps) == [round(0.1 * n, 6) for n in range(1, 12)]
    assert len(ledger.reservations) == 6  # blocks of two


# ---- several processes, one budget ------------------------------------------------------------


def simulate(processes: int, threads: int, rate: float, seconds: float, service_s: float) -> list[tuple[float, int]]:
    """Worker processes with busy threads on one budget, as discrete events on one clock: each
    thread acquires when it is free, calls at its slot, and is free again ``service_s`` later.
    Returns (call time, process) pairs."""
    clock = StillClock()
    ledger = Ledger(clock)
    t0 = clock.now().timestamp()
    limiters = [SharedLimiter("psb", rate=rate, clock=clock, reserve=ledger.reserve) for _ in range(processes)]
    free = [(0.001 * (p * threads + t), p) for p in range(processes) for t in range(threads)]
    heapq.heapify(free)
    calls = []
    while free:
        at, p = heapq.heappop(free)
        if at > seconds:
            break
        clock.advance(at - (clock.now().timestamp() - t0))
        call_at = at + limiters[p].acquire()
        calls.append((call_at, p))
        heapq.heappush(free, (call_at + service_s, p))
    return calls


def test_three_processes_hold_the_budget_together() -> None:
    rate = 20
    calls = simulate(processes=3, threads=8, rate=rate, seconds=70, service_s=0.03)
    times = sorted(t for t, _ in calls)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert min(gaps) >= 1 / rate - 1e-5, "two calls in one slot"  # 1e-5: the clock counts microseconds
    in_minute = [t for t in times if 5 <= t < 65]
    assert abs(len(in_minute) - 60 * rate) <= 1  # the budget used, and not more
    for start in range(5, 65):
        assert len([t for t in times if start <= t < start + 1]) <= rate + 1
    shares = [sum(1 for t, p in calls if p == proc and 5 <= t < 65) for proc in range(3)]
    assert min(shares) >= 0.25 * len(in_minute), shares  # each process gets a fair part


def test_a_process_with_little_to_do_leaves_the_rest_to_the_others() -> None:
    rate = 10
    calls = simulate(processes=2, threads=1, rate=rate, seconds=30, service_s=0.5)  # two calls a second each
    in_window = [t for t, _ in calls if 5 <= t < 25]
    assert 3.5 * 20 <= len(in_window) <= 4 * 20 + 1  # demand-bound, never over the budget


# ---- failing closed ---------------------------------------------------------------------------


def test_an_unreachable_database_fails_the_call_and_the_next_one_asks_again(caplog) -> None:
    clock = ManualClock()
    ledger = Ledger(clock)
    limiter = SharedLimiter("psb", rate=20, clock=clock, reserve=ledger.reserve)
    ledger.down = True
    with caplog.at_level(logging.INFO, logger="migration_engine.limiter"):
        for _ in range(3):
            with pytest.raises(BudgetUnavailable):
                limiter.acquire()
        ledger.down = False
        assert limiter.acquire() == 0.0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "'psb' cannot be reserved" in warnings[0].getMessage()  # once per outage
    assert any("can be reserved again" in r.getMessage() for r in caplog.records)
    assert limiter.calls == 1


def test_the_psb_client_makes_no_call_without_its_budget_slot() -> None:
    clock = ManualClock()
    ledger = Ledger(clock)
    sent: list[float] = []

    def route(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/connect/token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
        sent.append(clock.now().timestamp())
        return httpx.Response(200, json=[])

    budgets = SharedBudgets({"psb": 4}, clock=clock, reserve=ledger.reserve)
    client = PsbClient(
        base_url="https://psb.example",
        identity_url="https://id.example",
        client_id="c",
        transport=httpx.MockTransport(route),
        clock=clock,
        budget=budgets.limiter("psb"),
    )
    for _ in range(3):
        client.get_hooks("0106:1")
    assert [round(t - sent[0], 6) for t in sent] == [0.0, 0.25, 0.5]
    ledger.down = True
    clock.advance(10)
    with pytest.raises(PsbTransientError) as caught:
        client.get_hooks("0106:1")
    assert caught.value.code == "BUDGET" and "budgets.psb_per_s" in str(caught.value)
    assert len(sent) == 3  # the call was not made


def test_the_per_process_bucket_and_the_budget_both_hold() -> None:
    clock = ManualClock()
    ledger = Ledger(clock)
    sent: list[float] = []

    def route(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/connect/token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
        sent.append(clock.now().timestamp())
        return httpx.Response(200, json=[])

    budgets = SharedBudgets({"psb": 10}, clock=clock, reserve=ledger.reserve)
    client = PsbClient(
        base_url="https://psb.example",
        identity_url="https://id.example",
        client_id="c",
        max_rps=2,  # tighter than the budget: the process's own limit binds
        transport=httpx.MockTransport(route),
        clock=clock,
        budget=budgets.limiter("psb"),
    )
    for _ in range(3):
        client.get_hooks("0106:1")
    assert [round(t - sent[0], 6) for t in sent] == [0.0, 0.5, 1.0]


def test_a_lookup_without_its_budget_slot_is_a_technical_failure_and_is_tried_again() -> None:
    clock = ManualClock()
    ledger = Ledger(clock)
    budgets = SharedBudgets({"dns": 5}, clock=clock, reserve=ledger.reserve)
    shared = budgets.limiter("dns")
    limiter = Limiter("dns", rate=0, concurrency=1, clock=clock, attempts=2, backoff_s=1.0, shared=shared)
    asked: list[float] = []

    def lookup() -> str:
        asked.append(clock.now().timestamp())
        return "answer"

    ledger.down = True
    with pytest.raises(NetworkLookupError) as caught:
        limiter.call(lookup)
    assert caught.value.code == "BUDGET" and is_technical(caught.value)
    assert asked == [] and limiter.retries == 1
    ledger.down = False
    assert [limiter.call(lookup) for _ in range(3)] == ["answer"] * 3
    assert [round(t - asked[0], 6) for t in asked] == [0.0, 0.2, 0.4]
    assert limiter.stats()["waited_s"] == pytest.approx(0.4)


# ---- the set of budgets -----------------------------------------------------------------------


def test_budgets_are_per_dependency_and_per_smp_and_off_at_zero() -> None:
    clock = ManualClock()
    ledger = Ledger(clock)
    budgets = SharedBudgets({"psb": 20, "smp": 5, "dns": 0}, clock=clock, reserve=ledger.reserve)
    assert budgets.active
    assert budgets.limiter("dns") is None and budgets.limiter("directory") is None
    assert budgets.limiter("psb") is budgets.limiter("psb")
    one, other = budgets.limiter("smp", "https://a.example"), budgets.limiter("smp", "https://b.example")
    assert one is not None and other is not None and one is not other
    one.acquire()
    other.acquire()
    assert sorted(ledger.next_free) == ["smp https://a.example", "smp https://b.example"]
    assert not SharedBudgets({"psb": 0}, clock=clock, reserve=ledger.reserve).active
    with pytest.raises(ValueError, match="unknown budget"):
        SharedBudgets({"sml": 1}, clock=clock, reserve=ledger.reserve)
    with pytest.raises(ValueError):
        SharedBudgets({"psb": -1}, clock=clock, reserve=ledger.reserve)
