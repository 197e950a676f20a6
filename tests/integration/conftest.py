"""The integration tests' sandbox: in this process, on the test's ManualClock, so the engine and
the sandbox see the same time. The database fixtures are in tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from migration_engine.clock import ManualClock
from migration_engine.sandbox import SandboxConfig, SandboxServer


@pytest.fixture
def sandbox(sandbox_config: SandboxConfig, clock: ManualClock) -> Iterator[SandboxServer]:
    """A running sandbox with ``sandbox_config``, on the test's ``clock``."""
    with SandboxServer(sandbox_config, clock=clock) as server:
        yield server
