"""The token bucket behind ``psb.max_rps``, alone and inside PsbClient; ManualClock, no sleeps."""

from __future__ import annotations

import threading

import httpx
import pytest

from migration_engine.clock import ManualClock
from migration_engine.psb.client import PsbClient
from migration_engine.psb.ratelimit import TokenBucket


class StillClock(ManualClock):
    """Records sleeps without advancing, so each reservation shows the wait it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeps: list[float] = []
        self._sleep_lock = threading.Lock()

    def sleep(self, seconds: float) -> None:
        with self._sleep_lock:
            self.sleeps.append(seconds)


def test_calls_are_spaced_at_the_rate() -> None:
    clock = ManualClock()
    bucket = TokenBucket(rate=2, clock=clock)
    start = clock.monotonic()
    times = []
    for _ in range(4):
        bucket.acquire()
        times.append(clock.monotonic() - start)
    assert times == [0.0, 0.5, 1.0, 1.5]


def test_burst_then_spacing_and_refill_is_capped() -> None:
    clock = ManualClock()
    bucket = TokenBucket(rate=1, burst=3, clock=clock)
    assert [bucket.acquire() for _ in range(4)] == [0.0, 0.0, 0.0, 1.0]
    clock.advance(100)  # idle for long: only `burst` tokens saved up
    assert [bucket.acquire() for _ in range(4)] == [0.0, 0.0, 0.0, 1.0]


def test_no_wait_when_calls_are_slower_than_the_rate() -> None:
    clock = ManualClock()
    bucket = TokenBucket(rate=2, clock=clock)
    for _ in range(3):
        assert bucket.acquire() == 0.0
        clock.advance(0.5)


def test_concurrent_callers_each_get_their_own_slot() -> None:
    clock = StillClock()
    bucket = TokenBucket(rate=4, clock=clock)
    start = threading.Barrier(10)

    def work() -> None:
        start.wait()
        bucket.acquire()

    threads = [threading.Thread(target=work) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(clock.sleeps) == [0.25 * n for n in range(1, 10)]  # the first caller did not wait


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0.5)])
def test_bad_parameters(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=rate, burst=burst, clock=ManualClock())


def make(clock: ManualClock, max_rps: float | None, seen: list[float]) -> PsbClient:
    def route(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/connect/token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
        seen.append(clock.monotonic())
        return httpx.Response(200, json=[])

    return PsbClient(
        base_url="https://psb.example",
        identity_url="https://id.example",
        client_id="c",
        max_rps=max_rps,
        transport=httpx.MockTransport(route),
        clock=clock,
    )


def test_client_spaces_api_calls_across_views() -> None:
    clock = ManualClock()
    seen: list[float] = []
    client = make(clock, 4, seen)
    views = [client.recording(lambda call: None), client.recording(lambda call: None)]
    for n in range(5):
        views[n % 2].get_hooks("0106:1")
    start = seen[0]
    assert [t - start for t in seen] == [0.0, 0.25, 0.5, 0.75, 1.0]


@pytest.mark.parametrize("max_rps", [None, 0])
def test_client_without_a_limit_never_waits(max_rps: float | None) -> None:
    clock = ManualClock()
    seen: list[float] = []
    client = make(clock, max_rps, seen)
    for _ in range(5):
        client.get_hooks("0106:1")
    assert len(set(seen)) == 1
