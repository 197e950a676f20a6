"""Fault test and leak test: a 200-party batch through a sandbox having a bad hour - 20 % of
API calls answered 500/503, 10 % 429 with Retry-After, 5 % dropped connections, access tokens
that expire every few seconds and one revocation of them all - run by `peppol-migrate run
--until-idle` as a user runs it, with a request rate limit per worker below the sandbox's.

Every party completes without needs_attention; no second of the run sees more requests than
the configured limit; every 429's Retry-After is honoured; and nothing any command printed,
no log line, no audit row or other database row holds a key, a token or a secret.

One test runs the batch and then checks each of these in turn (a fixture shared by several
tests would run the batch once per xdist worker). ``-rP`` shows the figures lines.
"""

from __future__ import annotations

import json
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from migration_engine.clock import SystemClock
from migration_engine.sandbox import SandboxConfig, SandboxServer
from migration_engine.store import Store
from tests.support import engine_env, expected_moves, kvk, seed_batch
from tests.support.durability import (
    Transcript,
    database_text,
    leaks,
    moves_by_migration,
    secrets_to_find,
    wait_for_calls,
)

PARTIES = 200
MAX_RPS = 120  # psb.max_rps of the worker: the provider's limit with some headroom
SANDBOX_RPS = 150  # the provider's limit: the sandbox answers 429 above it
CONCURRENCY = 8  # step threads of the worker, so at most 8 requests in flight
# The shares of all API calls; the sandbox draws throttle, then error, then drop.
SHARES = {"error": 0.20, "throttled": 0.10, "dropped": 0.05}
TOKEN_TTL_S = 5.0


def fault_config() -> SandboxConfig:
    throttle = SHARES["throttled"]
    error = SHARES["error"] / (1 - throttle)
    drop = SHARES["dropped"] / ((1 - throttle) * (1 - error))
    return SandboxConfig(
        seed=5,
        throttle_rate=throttle,
        error_rate=error,
        drop_rate=drop,
        rate_limit_rps=SANDBOX_RPS,
        token_ttl_s=TOKEN_TTL_S,
    )


@dataclass
class FaultRun:
    db_url: str
    parties: list[str]
    calls: list[dict[str, Any]]
    secrets: dict[str, str]
    tokens_issued: int
    revoked: int
    texts: dict[str, str]
    status: dict[str, Any]


@pytest.mark.slow
def test_a_batch_through_a_bad_hour_of_faults(tmp_path: Path) -> None:
    run = run_batch(tmp_path)
    every_party_completes_without_needs_attention(run)
    no_second_sees_more_requests_than_the_limit(run)
    retry_after_is_honoured(run)
    no_key_token_or_secret_shows_anywhere(run)


def run_batch(folder: Path) -> FaultRun:
    inbound = [kvk(2000 + i) for i in range(PARTIES // 2)]
    outbound = [kvk(3000 + i) for i in range(PARTIES // 2)]
    with SandboxServer(fault_config()) as sandbox:
        keys = seed_batch(sandbox.model, folder / "b.csv", inbound=inbound, outbound=outbound)
        db_url = f"sqlite:///{folder / 'faults.db'}"
        env = engine_env(
            db_url,
            sandbox.url,
            PEPPOL_MIGRATE_PSB__MAX_RPS=str(MAX_RPS),
            PEPPOL_MIGRATE_WORKER__CONCURRENCY=str(CONCURRENCY),
            PEPPOL_MIGRATE_RETRY__MAX_ATTEMPTS="60",
            PEPPOL_MIGRATE_RETRY__BASE_S="0.05",
            PEPPOL_MIGRATE_RETRY__MAX_S="1.0",
            PEPPOL_MIGRATE_WORKER__LEASE_S="10",
            PEPPOL_MIGRATE_WORKER__POLL_INTERVAL_S="0.05",
            PEPPOL_MIGRATE_TAKEOVER__POLL_S="0.2",
            PEPPOL_MIGRATE_TAKEOVER__POLL_MAX_S="0.5",
        )
        out = Transcript(folder)
        assert out.cli("db", "upgrade", env=env).returncode == 0
        assert out.cli("import", str(folder / "b.csv"), "--batch", "faults", env=env).returncode == 0
        worker = out.spawn("run", "--until-idle", env=env)
        # A quarter of the way in, every access token is revoked: the next calls get 401 once.
        assert wait_for_calls(sandbox.model, worker, 0, 700, timeout_s=120)
        revoked = sandbox.model.tokens.revoke_all()
        assert worker.wait(timeout=300) == 0, out.everything()[out.logs[-1].name][-3000:]

        status = json.loads(out.cli("status", "--json", env=env).stdout)
        for args in (
            ["status", "--batch", "faults"],
            ["show", inbound[0]],
            ["show", outbound[0], "--json"],
            ["show", inbound[-1], "--json"],
            ["report", "--batch", "faults", "--format", "json"],
            ["report", "--batch", "faults", "--format", "csv"],
            ["audit", "verify"],
        ):
            assert out.cli(*args, env=env).returncode == 0, args
        return FaultRun(
            db_url=db_url,
            parties=inbound + outbound,
            calls=sandbox.model.calls(),
            secrets=secrets_to_find(sandbox, *keys.values()),
            tokens_issued=len(sandbox.model.tokens.issued()),
            revoked=revoked,
            texts=out.everything() | {"database": database_text(db_url)},
            status=status,
        )


def _at(call: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(call["at"])


def every_party_completes_without_needs_attention(run: FaultRun) -> None:
    store = Store(run.db_url, clock=SystemClock())
    records = list(store.list_migrations())
    assert sorted(r.party_id for r in records) == sorted(run.parties)
    assert Counter(r.state.value for r in records) == {"completed": PARTIES}
    assert run.status["needs_attention"] == 0
    paths = moves_by_migration(store)
    assert all(paths[r.party_id] == expected_moves(r.direction) for r in records), "a transition twice or missing"
    assert store.verify_audit() == []
    store.close()
    logged = "".join(run.texts[name] for name in run.texts if name.startswith("process-"))
    assert '"level": "error"' not in logged and "Traceback" not in logged

    faults = Counter(c["fault"] for c in run.calls)
    total = len(run.calls)
    shares = {
        "error": faults["error"] / total,
        "throttled": faults["throttled"] / total,
        "dropped": (faults["dropped_before"] + faults["dropped_after"]) / total,
    }
    for kind, wanted in SHARES.items():
        assert abs(shares[kind] - wanted) < 0.03, (kind, shares[kind])
    unauthorized = sum(c["status"] == 401 for c in run.calls)
    assert unauthorized >= 1 and run.revoked >= 1  # the revocation was noticed, and survived
    assert run.tokens_issued > 3  # tokens expired and were renewed along the way
    print(
        f"\nFIGURES faults: {PARTIES} parties, {PARTIES} completed, 0 needs_attention, 0 lost; {total} API calls; "
        f"injected: {faults['error']} x 500/503 ({shares['error']:.1%}), {faults['throttled']} x 429 "
        f"({shares['throttled']:.1%}), {faults['dropped_before']} dropped before + {faults['dropped_after']} "
        f"after processing ({shares['dropped']:.1%}), {faults['rate_limited']} x 429 over the sandbox's "
        f"{SANDBOX_RPS} rps; {run.revoked} tokens revoked -> {unauthorized} x 401 refreshed; "
        f"{run.tokens_issued} tokens issued (ttl {TOKEN_TTL_S:g} s)"
    )


def no_second_sees_more_requests_than_the_limit(run: FaultRun) -> None:
    """The provider's limit holds in every second of the run (arrival times at the sandbox), and
    the sandbox's own limiter never had to refuse a call.

    The worker sends at most MAX_RPS + 1 in any second (a token bucket with a burst of one); a
    second of arrivals can also hold requests sent just before it and still on their way, at
    most one per step thread.
    """
    times = sorted(_at(c) for c in run.calls)
    busiest = max(bisect_left(times, t + timedelta(seconds=1)) - i for i, t in enumerate(times))
    assert busiest <= min(SANDBOX_RPS, MAX_RPS + 1 + CONCURRENCY), busiest
    assert not any(c["fault"] == "rate_limited" for c in run.calls), "the sandbox's own limit was hit"
    print(
        f"\nFIGURES rate: busiest second {busiest} requests; psb.max_rps {MAX_RPS}, "
        f"provider (sandbox) limit {SANDBOX_RPS}, 0 refused for rate"
    )


def retry_after_is_honoured(run: FaultRun) -> None:
    by_party: dict[str | None, list[dict[str, Any]]] = {}
    for c in run.calls:
        by_party.setdefault(c["partyId"], []).append(c)
    throttled = 0
    by_party.pop(None, None)  # a PUT of user permissions answered by a fault names no party
    for calls in by_party.values():
        for this, after in pairwise(calls):
            if this["status"] == 429:
                throttled += 1
                assert _at(after) - _at(this) >= timedelta(seconds=1), (this, after)  # Retry-After: 1
    assert throttled > 50


def no_key_token_or_secret_shows_anywhere(run: FaultRun) -> None:
    assert len(run.secrets) > PARTIES  # a key per party at least, the tokens, the secrets
    assert len(run.texts) >= 10 and any('"action": "transition"' in t for t in run.texts.values())
    assert leaks(run.texts, run.secrets) == []
    print(f"\nFIGURES leaks: {len(run.secrets)} secrets searched in {len(run.texts)} outputs, none found")
