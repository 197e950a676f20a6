"""Retry decisions: full-jitter backoff, Retry-After and giving up, on a manual clock."""

from __future__ import annotations

import random

from migration_engine.clock import ManualClock
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
