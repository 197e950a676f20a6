"""Fault decisions and call classification of the sandbox, without a server."""

from __future__ import annotations

import pytest

from migration_engine.clock import ManualClock
from migration_engine.sandbox import SandboxConfig
from migration_engine.sandbox.catalog import classify_call
from migration_engine.sandbox.faults import FaultState


def test_rate_limit_is_a_token_bucket_on_the_model_clock() -> None:
    clock = ManualClock()
    state = FaultState(SandboxConfig(rate_limit_rps=3), clock.monotonic)
    assert [state.decide().fault for _ in range(3)] == [None, None, None]
    refused = state.decide()
    assert refused.fault == "rate_limited" and refused.status == 429 and refused.retry_after_s == 1
    clock.advance(1)
    assert [state.decide().fault for _ in range(3)] == [None, None, None]


def test_slow_rate_limits_ask_for_a_longer_wait() -> None:
    clock = ManualClock()
    state = FaultState(SandboxConfig(rate_limit_rps=0.2), clock.monotonic)
    assert state.decide().fault is None
    assert state.decide().retry_after_s == 5


def test_error_and_drop_decisions_follow_the_seed() -> None:
    config = SandboxConfig(error_rate=0.3, drop_rate=0.3, seed=42)
    first = [FaultState(config, ManualClock().monotonic).decide() for _ in range(1)]
    runs = []
    for _ in range(2):
        state = FaultState(config, ManualClock().monotonic)
        runs.append([(d.fault, d.status) for d in (state.decide() for _ in range(200))])
    assert runs[0] == runs[1] and first
    faults = {f for f, _ in runs[0]}
    assert faults == {None, "error", "dropped_before", "dropped_after"}
    assert {s for f, s in runs[0] if f == "error"} == {500, 503}


def test_all_drops_before_or_after_processing() -> None:
    before = FaultState(
        SandboxConfig(drop_rate=1.0, drop_after_processing_share=0.0), ManualClock().monotonic
    )
    after = FaultState(SandboxConfig(drop_rate=1.0, drop_after_processing_share=1.0), ManualClock().monotonic)
    assert {before.decide().fault for _ in range(20)} == {"dropped_before"}
    assert {after.decide().fault for _ in range(20)} == {"dropped_after"}


def test_update_at_runtime_validates_everything_first() -> None:
    state = FaultState(SandboxConfig(), ManualClock().monotonic)
    assert state.update({"latencyMs": 50, "error_rate": 0.5})["errorRate"] == 0.5
    assert state.snapshot()["latencyMs"] == 50
    with pytest.raises(ValueError):
        state.update({"dropRate": 0.1, "errorRate": 3})
    assert state.snapshot()["dropRate"] == 0.0
    with pytest.raises(ValueError):
        state.update({"cosmicRays": 1})
    assert state.update({"rateLimitRps": None})["rateLimitRps"] is None
    assert state.decide().latency_s == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("method", "path", "party", "mutating"),
    [
        ("GET", "/api/v1/peppol/0106:1/prepareToMigrate", "0106:1", True),
        ("GET", "/api/v1/peppol/config/party/0106:1", "0106:1", False),
        ("PUT", "/api/v1/peppol/config/party/0106:1", "0106:1", True),
        ("DELETE", "/api/v1/peppol/config/party/0106:1", "0106:1", True),
        ("GET", "/api/v1/peppol/deliveryOption", None, False),
        ("GET", "/api/v1/0106:1/hook", "0106:1", False),
        ("PUT", "/api/v1/0106:1/hook", "0106:1", True),
        ("DELETE", "/api/v1/0106:1/hook/7", "0106:1", True),
        ("GET", "/api/v1/user/u/party", None, False),
        ("PUT", "/api/v1/user/u/party", None, True),
        ("DELETE", "/api/v1/user/u/party/0106:1", "0106:1", True),
        ("PUT", "/api/v1-beta/0106:1/enroll", "0106:1", True),
    ],
)
def test_classify_call(method: str, path: str, party: str | None, mutating: bool) -> None:
    assert classify_call(method, path) == (party, mutating)
