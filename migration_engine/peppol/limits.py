"""Being a good citizen of the Peppol network: limits, retries and a cache for lookups.

- ``Limiter``: one dependency (the SML's DNS, one SMP, the Directory): at most
  ``concurrency`` calls in flight and at most ``rate`` calls a second (a token bucket with a
  burst of one, so calls are evenly spaced; 0 = no rate limit). Callers reserve the next slot
  under a lock and wait outside it, in arrival order. ``shared``, when given, is waited for
  after that: the budget every worker of the database shares (``limiter.SharedLimiter``,
  ``budgets.*_per_s``); when it cannot be reserved the call is not made and fails as a
  technical ``NetworkLookupError`` (code ``BUDGET``), retried like a timeout.
- ``Limiter.call``: one call with retries: a technical failure (``smp.is_technical``: timeout,
  refusal, SERVFAIL, 429, 5xx) is tried again up to ``attempts`` tries in all, waiting
  ``backoff_s``, then twice that, ... between tries; an answer (404, garbage) is not retried.
- ``TtlCache``: answers kept for ``ttl_s`` seconds of the clock's monotonic time.

Every wait is the injected clock's ``sleep``: with a ``ManualClock`` tests see exact spacing
and backoff without sleeping.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from migration_engine.clock import Clock
from migration_engine.errors import NetworkLookupError
from migration_engine.limiter import BudgetUnavailable, RateLimiter
from migration_engine.peppol.smp import is_technical

T = TypeVar("T")
MISSING: Any = object()


class Limiter:
    """Concurrency and rate bound of one dependency, with retry on technical failure; thread-safe."""

    def __init__(
        self,
        name: str,
        *,
        rate: float,
        concurrency: int,
        clock: Clock,
        attempts: int = 1,
        backoff_s: float = 0.0,
        shared: RateLimiter | None = None,
    ) -> None:
        if rate < 0 or concurrency < 1 or attempts < 1 or backoff_s < 0:
            raise ValueError("a limiter needs rate >= 0, concurrency >= 1, attempts >= 1 and backoff_s >= 0")
        self.name = name
        self.rate = rate
        self.concurrency = concurrency
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.shared = shared
        self._clock = clock
        self._slots = threading.BoundedSemaphore(concurrency)
        self._lock = threading.Lock()
        self._next = clock.monotonic()  # when the next call may start
        self.calls = 0
        self.retries = 0
        self.waited_s = 0.0

    def _reserve(self) -> float:
        """The seconds this caller waits for its turn under the rate (and takes the turn)."""
        with self._lock:
            self.calls += 1
            if not self.rate:
                return 0.0
            now = self._clock.monotonic()
            start = max(now, self._next)
            self._next = start + 1.0 / self.rate
            wait = start - now
            self.waited_s += wait
            return wait

    def once(self, fn: Callable[[], T]) -> T:
        """One call within the bounds, no retry."""
        with self._slots:
            wait = self._reserve()
            if wait > 0:
                self._clock.sleep(wait)
            if self.shared is not None:
                self._acquire_shared()
            return fn()

    def _acquire_shared(self) -> None:
        assert self.shared is not None
        try:
            waited = self.shared.acquire()
        except BudgetUnavailable as exc:  # fail closed: no lookup while the budget cannot be had
            raise NetworkLookupError(
                f"the shared {self.name} budget could not be reserved, so the lookup was not made: {exc}",
                code="BUDGET",
            ) from exc
        with self._lock:
            self.waited_s += waited

    def call(self, fn: Callable[[], T]) -> T:
        """``fn`` within the bounds, tried again on a technical ``NetworkLookupError``."""
        for attempt in range(1, self.attempts + 1):
            try:
                return self.once(fn)
            except NetworkLookupError as exc:
                if attempt >= self.attempts or not is_technical(exc):
                    raise
                with self._lock:
                    self.retries += 1
                self._clock.sleep(self.backoff_s * 2 ** (attempt - 1))
        raise AssertionError("unreachable")  # pragma: no cover

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "name": self.name,
                "rate_per_s": self.rate,
                "max_concurrency": self.concurrency,
                "calls": self.calls,
                "retries": self.retries,
                "waited_s": round(self.waited_s, 3),
            }


class TtlCache:
    """Values by key for ``ttl_s`` seconds (0 = nothing is kept); thread-safe."""

    def __init__(self, ttl_s: float, clock: Clock) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._items: dict[Hashable, tuple[float, Any]] = {}
        self.hits = 0

    def get(self, key: Hashable) -> Any:
        """The value, or ``MISSING`` when absent or older than ``ttl_s``."""
        with self._lock:
            found = self._items.get(key)
            if found is None:
                return MISSING
            if self._clock.monotonic() - found[0] >= self.ttl_s:
                del self._items[key]
                return MISSING
            self.hits += 1
            return found[1]

    def put(self, key: Hashable, value: Any) -> None:
        if self.ttl_s > 0:
            with self._lock:
                self._items[key] = (self._clock.monotonic(), value)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
