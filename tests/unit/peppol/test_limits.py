"""Lookups as a citizen of the network: rate, concurrency, retry with backoff and the run's cache,
all on a ManualClock (no real sleeps)."""

from __future__ import annotations

import contextlib
import itertools
import threading

import pytest

from migration_engine.clock import ManualClock
from migration_engine.errors import NetworkLookupError
from migration_engine.peppol.limits import MISSING, Limiter, TtlCache
from migration_engine.peppol.smp import SmpAnswerError, is_technical


def test_calls_are_spaced_by_the_rate(clock: ManualClock):
    limiter = Limiter("dns", rate=4, concurrency=1, clock=clock)
    starts = []
    for _ in range(5):
        limiter.once(lambda: starts.append(clock.monotonic()))
    assert [round(b - a, 6) for a, b in itertools.pairwise(starts)] == [0.25] * 4
    assert limiter.stats()["calls"] == 5 and limiter.stats()["waited_s"] == 1.0


def test_an_idle_dependency_is_called_at_once_and_rate_zero_means_no_limit(clock: ManualClock):
    limiter = Limiter("smp", rate=2, concurrency=1, clock=clock)
    limiter.once(lambda: None)
    clock.advance(10)
    before = clock.monotonic()
    limiter.once(lambda: None)
    assert clock.monotonic() == before
    free = Limiter("free", rate=0, concurrency=1, clock=clock)
    for _ in range(100):
        free.once(lambda: None)
    assert clock.monotonic() == before


def test_concurrency_is_bounded(clock: ManualClock):
    limiter = Limiter("smp", rate=0, concurrency=2, clock=clock)
    inside, peak, lock = 0, 0, threading.Lock()
    gate = threading.Barrier(2, timeout=5)

    def call() -> None:
        nonlocal inside, peak
        with lock:
            inside += 1
            peak = max(peak, inside)
        with contextlib.suppress(threading.BrokenBarrierError):
            gate.wait()  # two callers meet inside; a third would have to wait for a slot
        with lock:
            inside -= 1

    threads = [threading.Thread(target=limiter.once, args=(call,)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert peak == 2


@pytest.mark.parametrize(
    ("error", "technical"),
    [
        (NetworkLookupError("timeout", code="DNS"), True),
        (NetworkLookupError("503", code="SMP", status=503), True),
        (NetworkLookupError("429", code="DIRECTORY", status=429), True),
        (NetworkLookupError("403", code="SMP", status=403), False),
        (SmpAnswerError("not XML", code="SMP"), False),
    ],
)
def test_what_counts_as_technical(error, technical):
    assert is_technical(error) is technical


def test_a_technical_failure_is_retried_with_doubling_backoff(clock: ManualClock):
    limiter = Limiter("smp", rate=0, concurrency=1, clock=clock, attempts=3, backoff_s=1.0)
    tries = []

    def flaky() -> str:
        tries.append(clock.monotonic())
        if len(tries) < 3:
            raise NetworkLookupError("HTTP 503", code="SMP", status=503)
        return "ok"

    assert limiter.call(flaky) == "ok"
    assert [t - tries[0] for t in tries] == [0, 1.0, 3.0]
    assert limiter.stats()["retries"] == 2


def test_after_the_last_attempt_the_failure_is_raised(clock: ManualClock):
    limiter = Limiter("dns", rate=0, concurrency=1, clock=clock, attempts=2, backoff_s=0.5)
    calls = []

    def down() -> None:
        calls.append(1)
        raise NetworkLookupError("no answer", code="DNS")

    with pytest.raises(NetworkLookupError, match="no answer"):
        limiter.call(down)
    assert len(calls) == 2


def test_an_answer_is_not_retried(clock: ManualClock):
    limiter = Limiter("smp", rate=0, concurrency=1, clock=clock, attempts=5, backoff_s=1)
    calls = []

    def garbage() -> None:
        calls.append(1)
        raise SmpAnswerError("not a ServiceGroup", code="SMP")

    with pytest.raises(SmpAnswerError):
        limiter.call(garbage)
    assert calls == [1] and clock.monotonic() == 1000.0


def test_the_cache_keeps_answers_for_its_ttl(clock: ManualClock):
    cache = TtlCache(60, clock)
    cache.put("a", 1)
    clock.advance(59)
    assert cache.get("a") == 1 and cache.hits == 1
    clock.advance(1)
    assert cache.get("a") is MISSING
    off = TtlCache(0, clock)
    off.put("a", 1)
    assert off.get("a") is MISSING and len(off) == 0


def test_a_limiter_refuses_nonsense_bounds(clock: ManualClock):
    with pytest.raises(ValueError):
        Limiter("x", rate=-1, concurrency=1, clock=clock)
    with pytest.raises(ValueError):
        Limiter("x", rate=1, concurrency=0, clock=clock)
