"""Rate limits a call waits for: the protocol the PSB client and the network lookups take, and
the local half of the budgets shared by every worker of a database.

``RateLimiter`` is anything with ``acquire() -> float``: it waits (with the injected clock's
``sleep``) until one call may go, and returns the seconds it waited. The per-process limits
(``psb.TokenBucket``, ``peppol.limits.Limiter``'s rate) are such things; so is a
``SharedLimiter``, one dependency's budget shared through the database.

A shared budget is a *virtual schedule* (GCRA): the database keeps, per budget, the time its
next free slot starts (``next_free``). A process reserves ``count`` slots in one atomic
statement, ``next_free = max(next_free, now) + count / rate``, gets back where its block
starts, and hands the block's slots to its own threads locally, one every ``1 / rate``
seconds. So every slot of the timeline belongs to one call of one process, whatever the
number of processes, and the database is asked once per block rather than once per call.
A block is what ``BLOCK_S`` (0.2 s) of the budget allows, at least one slot.

- A slot a thread comes for more than one interval late (the process had nothing to send
  meanwhile) is dropped, not used: using it would put two calls in one interval. Slots left
  unused are lost, never saved up: the budget is a ceiling, never a burst.
- ``reserve`` (the store's) raises ``BudgetUnavailable`` when the database cannot be reached:
  the call is not made (fail closed) and the caller reports it as a transient failure, retried
  later like a timeout. ``docs/architecture.md`` ("Budgets") says why.
- Times are the clock's ``now()`` as seconds since the epoch: on PostgreSQL the runtime's clock
  is the database's (``store.db_clock``), so every process reads the same timeline.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from migration_engine.clock import Clock
from migration_engine.errors import PeppolMigrateError

log = logging.getLogger("migration_engine.limiter")

BLOCK_S = 0.2  # a reservation covers this much of the budget's time (at least one slot)
DEPENDENCIES = ("psb", "smp", "dns", "directory")  # the budgets, as [budgets] <name>_per_s
NAME_MAX = 120  # a budget's name in the database; longer keys (SMP URLs) are hashed


class BudgetUnavailable(PeppolMigrateError):
    """A shared budget could not be reserved (the database is unreachable): the call is not made."""


class RateLimiter(Protocol):
    """What a call waits for."""

    def acquire(self) -> float:
        """Wait until one call may go; the seconds waited. ``BudgetUnavailable``: it may not go now."""


class Budgets(Protocol):
    """The shared budgets: one limiter per dependency (per SMP for ``smp``), None when it is off."""

    def limiter(self, dependency: str, key: str = "") -> RateLimiter | None:
        """The budget of ``dependency`` (one of ``DEPENDENCIES``), for ``key`` (an SMP's base URL)."""


# (budget name, slots, slots a second) -> when the block starts: epoch seconds on the clock.
Reserve = Callable[[str, int, float], float]


def block_size(rate: float, block_s: float = BLOCK_S) -> int:
    """How many slots one reservation takes: what ``block_s`` of the budget allows, at least one."""
    if not rate > 0 or not block_s > 0:
        raise ValueError("a budget needs a rate and a block time above 0")
    return max(1, math.floor(rate * block_s + 1e-9))


def reserve_slots(next_free: float, now: float, count: int, rate: float) -> tuple[float, float]:
    """The virtual schedule's step: (where the block of ``count`` slots starts, the new ``next_free``).

    A budget idle since ``next_free`` starts now (nothing is saved up); a busy one queues the
    block behind the slots already reserved. The store runs the same arithmetic in SQL."""
    if count < 1 or not rate > 0:
        raise ValueError("a reservation needs at least one slot and a rate above 0")
    start = max(next_free, now)
    return start, start + count / rate


def budget_name(dependency: str, key: str = "") -> str:
    """The budget's row name: ``psb``, ``dns``, ``directory``, ``smp <base URL>`` (long ones hashed)."""
    if dependency not in DEPENDENCIES:
        raise ValueError(f"unknown budget {dependency!r}: one of {', '.join(DEPENDENCIES)}")
    key = key.strip().rstrip("/")
    if not key:
        return dependency
    name = f"{dependency} {key}"
    if len(name) <= NAME_MAX:
        return name
    return f"{dependency} sha256:{hashlib.sha256(key.encode()).hexdigest()}"


class SharedLimiter:
    """One budget's slots for this process: reserved a block at a time, handed out in order; thread-safe."""

    def __init__(self, name: str, *, rate: float, clock: Clock, reserve: Reserve, block_s: float = BLOCK_S) -> None:
        self.name = name
        self.rate = rate
        self.block = block_size(rate, block_s)
        self.interval = 1.0 / rate
        self._clock = clock
        self._reserve = reserve
        self._lock = threading.Lock()
        self._start = 0.0  # the local block's first slot (epoch seconds) ...
        self._taken = 0  # ... how many of its slots were handed out or dropped ...
        self._size = 0  # ... and how many it has
        self._failing = False
        self.calls = 0
        self.reservations = 0
        self.dropped = 0  # slots come for too late, and not used
        self.waited_s = 0.0

    def _now(self) -> float:
        return self._clock.now().timestamp()

    def _take(self, now: float) -> float | None:
        """The block's next slot that is not more than one interval past; None when none is left."""
        while self._taken < self._size:
            slot = self._start + self._taken * self.interval
            self._taken += 1
            if slot >= now - self.interval:
                return slot
            self.dropped += 1
        return None

    def _new_block(self) -> float:
        """Reserve a block in the database; its first slot (taken even when the round trip made it late)."""
        try:
            start = self._reserve(self.name, self.block, self.rate)
        except BudgetUnavailable as exc:
            if not self._failing:
                self._failing = True
                log.warning(
                    f"the shared budget {self.name!r} cannot be reserved ({exc}): its calls are not made "
                    "and are retried later",
                    extra={"action": "budget_unavailable"},
                )
            raise
        if self._failing:
            self._failing = False
            log.info(f"the shared budget {self.name!r} can be reserved again", extra={"action": "budget_available"})
        self.reservations += 1
        self._start, self._taken, self._size = start, 1, self.block
        return start

    def acquire(self) -> float:
        """Wait for this process's next slot of the budget; the seconds waited."""
        with self._lock:
            slot = self._take(self._now())
            if slot is None:
                slot = self._new_block()
            self.calls += 1
            wait = max(0.0, slot - self._now())
            self.waited_s += wait
        if wait > 0:
            self._clock.sleep(wait)
        return wait

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "name": self.name,
                "rate_per_s": self.rate,
                "block": self.block,
                "calls": self.calls,
                "reservations": self.reservations,
                "dropped_slots": self.dropped,
                "waited_s": round(self.waited_s, 3),
            }

    def __repr__(self) -> str:
        return f"SharedLimiter({self.name!r}, rate={self.rate}, block={self.block})"


class SharedBudgets:
    """The budgets of ``[budgets]`` (a rate per dependency, 0 = off) over one ``reserve``; thread-safe.

    ``limiter(dependency, key)`` gives the same ``SharedLimiter`` for the same budget, so the
    threads of a process share its block."""

    def __init__(self, rates: Mapping[str, float], *, clock: Clock, reserve: Reserve, block_s: float = BLOCK_S) -> None:
        unknown = sorted(set(rates) - set(DEPENDENCIES))
        if unknown:
            raise ValueError(f"unknown budget(s) {', '.join(unknown)}: one of {', '.join(DEPENDENCIES)}")
        if any(rate < 0 for rate in rates.values()):
            raise ValueError("a budget's rate is 0 (off) or above")
        self.rates = dict(rates)
        self._clock = clock
        self._reserve = reserve
        self._block_s = block_s
        self._lock = threading.Lock()
        self._limiters: dict[str, SharedLimiter] = {}

    @property
    def active(self) -> bool:
        """Whether any budget is on."""
        return any(rate > 0 for rate in self.rates.values())

    def limiter(self, dependency: str, key: str = "") -> SharedLimiter | None:
        rate = self.rates.get(dependency, 0.0)
        name = budget_name(dependency, key)
        if not rate:
            return None
        with self._lock:
            found = self._limiters.get(name)
            if found is None:
                found = SharedLimiter(name, rate=rate, clock=self._clock, reserve=self._reserve, block_s=self._block_s)
                self._limiters[name] = found
            return found

    def stats(self) -> list[dict[str, Any]]:
        with self._lock:
            limiters = list(self._limiters.values())
        return [limiter.stats() for limiter in limiters]

