"""The budgets every worker of a database shares (store/budgets.py), on SQLite and PostgreSQL:
one atomic reservation per block, no slot ever given twice, whatever the number of stores
(processes) and threads reserving at once; the limiters over several stores hold the budget.
ManualClock: nothing sleeps."""

from __future__ import annotations

import heapq
from concurrent.futures import ThreadPoolExecutor

import pytest

from migration_engine.clock import ManualClock
from migration_engine.engine.runtime import Runtime
from migration_engine.limiter import BudgetUnavailable, SharedBudgets
from migration_engine.settings import Settings, with_overrides
from tests.support import TEST_AUDIT_KEY


class StillClock(ManualClock):
    """Sleeps are not slept: a limiter's wait is what its ``acquire`` returns."""

    def sleep(self, seconds: float) -> None:
        return None


def test_blocks_queue_back_to_back_and_an_idle_budget_starts_now(store, clock) -> None:
    now = clock.now().timestamp()
    assert store.reserve_budget("psb", 4, 20.0) == pytest.approx(now, abs=1e-6)
    assert store.reserve_budget("psb", 4, 20.0) == pytest.approx(now + 0.2, abs=1e-6)
    assert store.reserve_budget("dns", 1, 2.0) == pytest.approx(now, abs=1e-6)  # another budget, its own row
    clock.advance(60)  # idle: nothing was saved up, the next block starts now
    assert store.reserve_budget("psb", 4, 20.0) == pytest.approx(now + 60, abs=1e-6)
    rows = {row.name: row for row in store.budget_rows()}
    assert sorted(rows) == ["dns", "psb"]
    assert rows["psb"].reserved == 12 and rows["psb"].rate_per_s == 20.0
    assert rows["psb"].next_free.timestamp() == pytest.approx(now + 60.2, abs=1e-6)
    assert rows["psb"].updated_at == clock.now()


def test_concurrent_reservations_from_several_stores_never_share_a_slot(make_store, clock) -> None:
    stores = [make_store(upgrade=n == 0) for n in range(3)]
    now = clock.now().timestamp()
    per_thread, threads = 15, 4

    def reserve_many(n: int) -> list[float]:
        return [stores[n % 3].reserve_budget("psb", 4, 20.0) for _ in range(per_thread)]

    with ThreadPoolExecutor(max_workers=3 * threads) as pool:
        starts = sorted(s for found in pool.map(reserve_many, range(3 * threads)) for s in found)
    blocks = 3 * threads * per_thread
    assert starts == pytest.approx([now + 0.2 * k for k in range(blocks)], abs=1e-5)  # contiguous, none twice
    assert stores[0].budget_rows()[0].reserved == 4 * blocks


def test_limiters_over_three_stores_hold_the_budget(make_store) -> None:
    """Three processes (a store and its budgets each) with four busy threads apiece, as discrete
    events on one clock: every call goes at its slot; over 20 s the calls are the budget's."""
    clock = StillClock()
    rate, seconds = 20.0, 22.0
    stores = [make_store(upgrade=n == 0, clock=clock) for n in range(3)]
    limiters = [SharedBudgets({"psb": rate}, clock=clock, reserve=s.reserve_budget).limiter("psb") for s in stores]
    t0 = clock.now().timestamp()
    free = [(0.001 * n, n % 3) for n in range(12)]
    heapq.heapify(free)
    calls: list[tuple[float, int]] = []
    while free:
        at, process = heapq.heappop(free)
        if at > seconds:
            break
        clock.advance(at - (clock.now().timestamp() - t0))
        limiter = limiters[process]
        assert limiter is not None
        call_at = at + limiter.acquire()
        calls.append((call_at, process))
        heapq.heappush(free, (call_at + 0.02, process))
    window = sorted(t for t, _ in calls if 1 <= t < 21)
    assert abs(len(window) - 20 * rate) <= 1
    assert all(len([t for t in window if s <= t < s + 1]) <= rate + 1 for s in range(1, 21))
    assert min(sum(1 for t, p in calls if p == n and 1 <= t < 21) for n in range(3)) >= 0.25 * len(window)
    reserved = stores[0].budget_rows()[0].reserved
    assert len(calls) <= reserved <= len(calls) + 3 * 4  # at most a block per process left unused


def test_a_budget_that_cannot_be_reserved_fails_closed(make_store) -> None:
    bare = make_store(upgrade=False)  # no budgets table: the database refuses the reservation
    with pytest.raises(BudgetUnavailable, match="reserve 4 slot"):
        bare.reserve_budget("psb", 4, 20.0)
    with pytest.raises(ValueError):
        bare.reserve_budget("psb", 0, 20.0)


def test_the_runtime_wires_one_set_of_budgets_into_the_lookups(db_url, clock) -> None:
    off = Runtime(with_overrides(Settings(), database={"url": db_url}), clock=clock)
    unbound = off.network_lookups()
    assert off.budgets() is None and unbound.dns.shared is None
    unbound.close()
    budgets_on = {"dns_per_s": 5.0, "smp_per_s": 2.0}
    settings = with_overrides(Settings(), database={"url": db_url}, budgets=budgets_on, audit={"key": TEST_AUDIT_KEY})
    rt = Runtime(settings, clock=clock)
    try:
        rt.store.upgrade()
        budgets = rt.budgets()
        assert budgets is not None and budgets is rt.budgets() and budgets.limiter("psb") is None
        lookups = rt.network_lookups()
        assert lookups.dns.shared is budgets.limiter("dns")
        assert lookups.directory_limiter.shared is None
        assert lookups.smp_limiter("https://smp.example/").shared is budgets.limiter("smp", "https://smp.example")
        dns = budgets.limiter("dns")
        assert dns is not None and dns.acquire() == 0.0 and dns.acquire() == pytest.approx(0.2)
        assert [(r.name, r.reserved) for r in rt.store.budget_rows()] == [("dns", 2)]
        lookups.close()
    finally:
        rt.close()
        off.close()
