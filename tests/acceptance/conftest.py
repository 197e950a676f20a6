"""The acceptance tests' sandbox: on the system clock, since the engine runs in other processes
(the installed console script) and waits in real time. The database fixtures are in
tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from migration_engine.sandbox import SandboxConfig, SandboxServer


@pytest.fixture
def sandbox(sandbox_config: SandboxConfig) -> Iterator[SandboxServer]:
    """A running sandbox with ``sandbox_config``, on the system clock."""
    with SandboxServer(sandbox_config) as server:
        yield server
