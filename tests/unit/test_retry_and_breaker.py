"""Retry decisions and the circuit breaker, on a manual clock."""

import random

from migration_engine.clock import ManualClock
from migration_engine.engine.breaker import CircuitBreaker
from migration_engine.engine.retry import GiveUp, RetryAt, RetryPolicy
from migration_engine.settings import RetrySettings


def test_backoff_is_full_jitter_under_an_exponential_cap():
    policy = RetryPolicy(RetrySettings(max_attempts=10, base_s=2, max_s=60), rng=random.Random(1))
    for attempt in range(1, 9):
        delays = [policy.delay_s(attempt) for _ in range(300)]
        cap = min(60, 2 * 2 ** (attempt - 1))
        assert max(delays) <= cap
        assert min(delays) < cap * 0.2  # full jitter reaches near zero
        assert max(delays) > cap * 0.8


def test_retry_after_is_honoured():
    policy = RetryPolicy(RetrySettings(max_attempts=5, base_s=0.1, max_s=60), rng=random.Random(2))
    assert all(policy.delay_s(1, retry_after_s=7) >= 7 for _ in range(100))


def test_gives_up_after_max_attempts():
    clock = ManualClock()
    policy = RetryPolicy(RetrySettings(max_attempts=3, base_s=1, max_s=10))
    first = policy.decide(attempts_so_far=0, now=clock.now())
    assert isinstance(first, RetryAt) and first.attempts == 1 and first.when >= clock.now()
    assert isinstance(policy.decide(attempts_so_far=1, now=clock.now()), RetryAt)
    assert policy.decide(attempts_so_far=2, now=clock.now()) == GiveUp(attempts=3)


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
