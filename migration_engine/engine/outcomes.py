"""What a step returns: a decision, not an action. The worker turns it into one
compare-and-set in the store (state, schedule, audit events together).

- ``Advance``: fire a trigger of the state table (the normal way forward).
- ``Wait``: stay in the state and look again at ``until`` (a poll), or wait for a person (``None``).
- ``Fail``: fire a failure trigger (``key_refused``, ``fail``) with the reason an operator reads.

Transient trouble is not an outcome: a step raises ``PsbTransientError`` and the retry
policy decides when to try again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from migration_engine.machine import Trigger


@dataclass(frozen=True)
class Advance:
    trigger: Trigger
    detail: Mapping[str, Any] = field(default_factory=dict)
    key_ciphertext: str | None = None  # a newly stored (encrypted) key
    key_issued_at: datetime | None = None


@dataclass(frozen=True)
class Wait:
    until: datetime | None
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Fail:
    trigger: Trigger
    reason: str
    code: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


Outcome = Advance | Wait | Fail
