"""The circuit breaker, on a manual clock: it opens on a systemic failure but not on ordinary
failure rates; its probe is taken once and handed back when it proves nothing; and every
change of state is reported (the worker writes it where `status` shows it)."""

from __future__ import annotations

import random

from migration_engine.clock import ManualClock
from migration_engine.engine.breaker import CircuitBreaker


def opened(changes: list[tuple[str, str]]) -> tuple[ManualClock, CircuitBreaker]:
    clock = ManualClock()
    breaker = CircuitBreaker(clock=clock, cooldown_s=30, on_change=lambda s, r: changes.append((s, r)))
    breaker.record(ok=False, reason="HTTP 401 after a new token", systemic=True)
    return clock, breaker


def test_every_change_of_state_is_reported_with_its_reason():
    changes: list[tuple[str, str]] = []
    clock, breaker = opened(changes)
    clock.advance(30)
    assert breaker.allowed(8) == 1
    breaker.record(ok=False, reason="HTTP 401 again")
    clock.advance(60)
    assert breaker.allowed(8) == 1
    breaker.record(ok=True)
    assert changes == [
        ("open", "HTTP 401 after a new token"),
        ("half-open", "HTTP 401 after a new token"),
        ("open", "probe failed: HTTP 401 again"),
        ("half-open", "probe failed: HTTP 401 again"),
        ("closed", ""),
    ]


def test_a_probe_that_proved_nothing_is_handed_back():
    clock, breaker = opened([])
    clock.advance(30)
    assert breaker.may_claim() and breaker.may_claim()  # asking does not take the probe
    assert breaker.allowed(8) == 1
    assert not breaker.may_claim() and breaker.allowed(8) == 0
    breaker.release_probe()  # nothing was due, or the step called no API
    assert breaker.state == "half-open" and breaker.allowed(8) == 1


def test_no_free_slot_takes_no_probe():
    clock, breaker = opened([])
    clock.advance(30)
    assert breaker.allowed(0) == 0
    assert breaker.allowed(3) == 1


def test_a_refusal_is_not_a_failure_and_closes_a_probe():
    """The worker records a refused key (4xx) as ok: the API answered."""
    clock, breaker = opened([])
    clock.advance(30)
    assert breaker.allowed(1) == 1
    breaker.record(ok=True)
    assert breaker.state == "closed" and breaker.reason == ""


def test_breaker_opens_on_a_systemic_failure_and_probes_after_cooldown():
    clock = ManualClock()
    breaker = CircuitBreaker(clock=clock, cooldown_s=30)
    assert breaker.allowed(8) == 8
    breaker.record(ok=False, reason="HTTP 401", systemic=True)
    assert breaker.state == "open" and breaker.allowed(8) == 0
    clock.advance(31)
    assert breaker.allowed(8) == 1  # one probe
    assert breaker.allowed(8) == 0  # only one at a time
    breaker.record(ok=False, reason="still 401")
    assert breaker.state == "open"
    clock.advance(31)
    assert breaker.allowed(8) == 0  # cooldown doubled to 60 s
    clock.advance(30)
    assert breaker.allowed(8) == 1
    breaker.record(ok=True)
    assert breaker.state == "closed" and breaker.allowed(8) == 8


def test_breaker_tolerates_ordinary_failure_rates():
    clock = ManualClock()
    breaker = CircuitBreaker(clock=clock, min_calls=20, failure_rate=0.8)
    rng = random.Random(3)
    for _ in range(500):
        breaker.record(ok=rng.random() > 0.35)  # 35 % faults: retries handle these
        clock.advance(0.05)
    assert breaker.state == "closed"
    clock.advance(61)  # the window forgets the mixed results
    for _ in range(25):
        breaker.record(ok=False, reason="HTTP 503")
    assert breaker.state == "open"
