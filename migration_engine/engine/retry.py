"""Retries are decisions: a transient failure becomes "try again at T" or "give up".

Exponential backoff with full jitter (the AWS architecture blog's "full jitter":
``random(0, min(max_s, base_s * 2**attempt))``), never sooner than the server's
``Retry-After``. After ``max_attempts`` transient failures in one state the migration goes
to ``needs_attention`` with the last error.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from migration_engine.settings import RetrySettings


@dataclass(frozen=True)
class RetryAt:
    when: datetime
    attempts: int


@dataclass(frozen=True)
class GiveUp:
    attempts: int


class RetryPolicy:
    def __init__(self, settings: RetrySettings, *, rng: random.Random | None = None) -> None:
        self._settings = settings
        self._rng = rng or random.Random()

    def delay_s(self, attempt: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait before try number ``attempt + 1`` (``attempt`` failures so far, >= 1)."""
        cap = min(self._settings.max_s, self._settings.base_s * (2 ** min(attempt - 1, 30)))
        delay = self._rng.uniform(0, cap)
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self._settings.max_s))
        return delay

    def decide(self, *, attempts_so_far: int, now: datetime, retry_after_s: float | None = None) -> RetryAt | GiveUp:
        attempts = attempts_so_far + 1
        if attempts >= self._settings.max_attempts:
            return GiveUp(attempts=attempts)
        return RetryAt(when=now + timedelta(seconds=self.delay_s(attempts, retry_after_s)), attempts=attempts)
