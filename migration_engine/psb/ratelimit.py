"""A thread-safe token bucket: at most ``rate`` requests a second, ``burst`` at once.

Each caller *reserves* the next free slot under a lock and then waits outside it, so
callers are served in arrival order and never sleep while holding the lock. The bucket may
go into debt: with ``rate=2`` and ``burst=1``, three callers arriving together wait 0, 0.5
and 1.0 s. Time comes from an injected ``Clock``, so with a ``ManualClock`` tests observe
exact spacing without sleeping.

The limit is per bucket, i.e. per worker process (``psb.max_rps``). A bucket is a
``limiter.RateLimiter``; the PSB client waits for it first and then, when ``budgets.psb_per_s``
is set, for the budget every worker of the database shares (``limiter.SharedLimiter``), which
is how a provider's limit holds across processes without splitting it by hand.
"""

from __future__ import annotations

import threading

from migration_engine.clock import Clock


class TokenBucket:
    """Spaces calls to at most ``rate`` a second, allowing ``burst`` back-to-back."""

    def __init__(self, *, rate: float, clock: Clock, burst: float = 1.0) -> None:
        if not rate > 0:
            raise ValueError("a token bucket needs a rate above 0")
        if not burst >= 1:
            raise ValueError("a token bucket needs a burst of at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = burst
        self._updated = clock.monotonic()

    def reserve(self) -> float:
        """Take one token now; returns how many seconds the caller must wait before using it."""
        with self._lock:
            now = self._clock.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            self._tokens -= 1
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def acquire(self) -> float:
        """Wait (with the clock's ``sleep``) until a call may go; returns the seconds waited."""
        wait = self.reserve()
        if wait > 0:
            self._clock.sleep(wait)
        return wait

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self.rate}, burst={self.burst})"
