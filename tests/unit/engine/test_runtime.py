"""The runtime builds the PSB client for every command that talks to the PSB: the one place
where switching off TLS certificate checks can be said out loud on each start."""

from __future__ import annotations

import logging

import pytest

from migration_engine.engine.runtime import Runtime
from migration_engine.settings import Settings, with_overrides

LOGGER = "migration_engine.engine.runtime"


def build_psb(settings: Settings) -> None:
    runtime = Runtime(settings)
    try:
        assert runtime.psb is runtime.psb  # built once per start
    finally:
        runtime.close()


def test_verify_tls_false_is_warned_about_on_every_start(caplog: pytest.LogCaptureFixture) -> None:
    unchecked = with_overrides(Settings(), psb={"client_id": "c", "verify_tls": False})
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        build_psb(unchecked)
        build_psb(unchecked)
    warnings = [r for r in caplog.records if r.name == LOGGER]
    assert [r.levelno for r in warnings] == [logging.WARNING, logging.WARNING]
    assert all("psb.verify_tls is false" in r.getMessage() for r in warnings)


def test_verify_tls_true_starts_quietly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        build_psb(with_overrides(Settings(), psb={"client_id": "c"}))
    assert [r for r in caplog.records if r.name == LOGGER] == []
