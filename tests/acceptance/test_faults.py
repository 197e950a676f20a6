"""Fault test and leak test: a 200-party batch through a sandbox having a bad hour - 20 % of
API calls answered 500/503, 10 % 429 with Retry-After, 5 % dropped connections, the same on
the token endpoint and the key handoff (a gateway in front of them, ``tests/support/gateway.py``),
access tokens that expire every few seconds and one revocation of them all - run by
`peppol-migrate run --until-idle` as a user runs it, with a request rate limit per worker below
the sandbox's, at the default retry settings (``retry.max_attempts`` 8; only the backoff's
seconds are scaled down, which changes when a retry runs, not how many there are).

What the run must show:
- needs_attention is what the defaults predict (README, "What the fault figure depends on"):
  a step of k calls fails a try with 1 - (1 - p)^k at a share p of failed calls, and a party
  needs attention after max_attempts failed tries in a row. Each such party gave up after
  exactly max_attempts tries on an injected transient fault, none on anything else, and their
  number stays within the prediction's bound. After the bad hour, one `retry --batch` and one
  more run complete every party; no party is lost or moved twice.
- No second of the run sees more requests than the configured limit; every 429's Retry-After
  is honoured (PSB and handoff alike).
- Each outbound party's key is handed over exactly once: the faults on the handoff are the
  kind its receiver never sees, and the provider took each party over with it once.
- Nothing any command printed, no log line, no database row, no byte of the database file or
  its WAL (copied while the worker runs), no report file holds a key, a token or a secret.

One test runs the batch and then checks each of these in turn (a fixture shared by several
tests would run the batch once per xdist worker). ``-rP`` shows the figures lines.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import urllib.request
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from math import sqrt
from pathlib import Path
from typing import Any

import pytest

from migration_engine.clock import SystemClock
from migration_engine.machine import State
from migration_engine.sandbox import SandboxConfig, SandboxServer
from migration_engine.settings import RetrySettings
from migration_engine.store import MigrationRecord, Store
from tests.support import PROVIDER, TEST_AUDIT_KEY, engine_env, expected_moves, kvk, seed_batch
from tests.support.durability import (
    Transcript,
    database_text,
    file_texts,
    leaks,
    moves_by_migration,
    secrets_to_find,
    wait_for_calls,
)
from tests.support.gateway import FaultGateway

PARTIES = 200
MAX_RPS = 120  # psb.max_rps of the worker: the provider's limit with some headroom
SANDBOX_RPS = 150  # the provider's limit: the sandbox answers 429 above it
CONCURRENCY = 8  # step threads of the worker, so at most 8 requests in flight
# The shares of all API calls; the sandbox draws throttle, then error, then drop.
SHARES = {"error": 0.20, "throttled": 0.10, "dropped": 0.05}
TOKEN_TTL_S = 5.0
MAX_ATTEMPTS = RetrySettings().max_attempts  # the default: the run does not change it
# The PSB calls of one try of each step that may fail (default profile, one hook, one user):
# the longest steps are where a party can run out of tries.
CALLS_PER_TRY = {
    ("to-econnect", "key_issued"): 1,  # PUT migration
    ("to-econnect", "taken_over"): 3,  # PUT config, GET hooks, PUT hook
    ("to-econnect", "capabilities_configured"): 2,  # PUT user, PUT enroll
    ("from-econnect", "requested"): 1,  # prepareToMigrate
    ("from-econnect", "key_issued"): 1,  # the handoff POST
    ("from-econnect", "taken_over"): 3,  # GET config, GET hooks, DELETE user
    # The polls: a poll that gets its answer starts the count afresh, so only 8 failures in a row count.
    ("to-econnect", "takeover_submitted"): 1,  # deliveryOption
    ("to-econnect", "permissions_set"): 1,  # deliveryOption
    ("from-econnect", "key_delivered"): 1,  # deliveryOption
}
# How the last error of a party that ran out of tries reads: an injected 5xx or 429 (from the PSB,
# the identity server or the handoff's gateway), or a connection dropped without an answer.
INJECTED = re.compile(r"HTTP (500|503|429)\b|connection failed|Server disconnected|RemoteProtocolError")


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


def fault_gateway(sandbox_url: str) -> FaultGateway:
    config = fault_config()
    return FaultGateway(
        sandbox_url, error=config.error_rate, throttle=config.throttle_rate, drop=config.drop_rate, seed=1
    )


@dataclass
class FaultRun:
    db_url: str
    parties: list[str]
    outbound: list[str]
    calls: list[dict[str, Any]]
    gateway: list[dict[str, Any]]
    provider_log: list[dict[str, Any]]
    secrets: dict[str, str]
    tokens_issued: int
    revoked: int
    texts: dict[str, str]
    attention: list[MigrationRecord]  # needs_attention at the end of the bad hour
    attention_status: int  # what `status --json` counted


@pytest.mark.slow
def test_a_batch_through_a_bad_hour_of_faults(tmp_path: Path) -> None:
    run = run_batch(tmp_path)
    needs_attention_is_what_the_defaults_predict(run)
    every_party_completes_after_one_retry(run)
    no_second_sees_more_requests_than_the_limit(run)
    retry_after_is_honoured(run)
    each_key_is_handed_over_exactly_once(run)
    no_key_token_or_secret_shows_anywhere(run)


def run_batch(folder: Path) -> FaultRun:
    inbound = [kvk(2000 + i) for i in range(PARTIES // 2)]
    outbound = [kvk(3000 + i) for i in range(PARTIES // 2)]
    with SandboxServer(fault_config()) as sandbox, fault_gateway(sandbox.url) as gateway:
        keys = seed_batch(sandbox.model, folder / "b.csv", inbound=inbound, outbound=outbound)
        db = folder / "faults.db"
        db_url = f"sqlite:///{db}"
        env = engine_env(
            db_url,
            sandbox.url,
            PEPPOL_MIGRATE_PSB__IDENTITY_URL=gateway.url,
            PEPPOL_MIGRATE_HANDOFF__ENDPOINT=f"{gateway.url}/sandbox/providers/{{new_provider}}/handoff",
            PEPPOL_MIGRATE_PSB__MAX_RPS=str(MAX_RPS),
            PEPPOL_MIGRATE_WORKER__CONCURRENCY=str(CONCURRENCY),
            PEPPOL_MIGRATE_RETRY__BASE_S="0.05",
            PEPPOL_MIGRATE_RETRY__MAX_S="1.0",
            PEPPOL_MIGRATE_WORKER__LEASE_S="10",
            PEPPOL_MIGRATE_WORKER__POLL_INTERVAL_S="0.05",
            PEPPOL_MIGRATE_TAKEOVER__POLL_S="0.2",
            PEPPOL_MIGRATE_TAKEOVER__POLL_MAX_S="0.5",
        )
        assert "PEPPOL_MIGRATE_RETRY__MAX_ATTEMPTS" not in env
        out = Transcript(folder)
        assert out.cli("db", "upgrade", env=env).returncode == 0
        assert out.cli("import", str(folder / "b.csv"), "--batch", "faults", env=env).returncode == 0
        # A reader keeps the WAL from being removed when the worker closes the database, so its
        # bytes can be read at the end too; a copy is taken mid-run as well.
        reader = sqlite3.connect(db)
        try:
            assert reader.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0  # opens the WAL
            worker = out.spawn("run", "--until-idle", env=env)
            # A quarter of the way in, every access token is revoked: the next calls get 401 once.
            assert wait_for_calls(sandbox.model, worker, 0, 700, timeout_s=120)
            revoked = sandbox.model.tokens.revoke_all()
            shutil.copyfile(db.with_name("faults.db-wal"), folder / "mid-run.db-wal")
            assert worker.wait(timeout=300) == 0, out.everything()[out.logs[-1].name][-3000:]
            shutil.copyfile(db.with_name("faults.db-wal"), folder / "end.db-wal")
        finally:
            reader.close()

        store = Store(db_url, clock=SystemClock(), audit_key=TEST_AUDIT_KEY)
        attention = [r for r in store.list_migrations() if r.state == State.NEEDS_ATTENTION]
        store.close()
        attention_status = json.loads(out.cli("status", "--json", env=env).stdout)["needs_attention"]

        # The bad hour is over: the operator retries what needs attention, and runs the worker.
        _post_json(f"{sandbox.url}/sandbox/faults", {"errorRate": 0, "throttleRate": 0, "dropRate": 0})
        gateway.shares = dict.fromkeys(gateway.shares, 0.0)
        retried = out.cli("retry", "--batch", "faults", env=env)
        assert retried.returncode == 0, retried.stdout + retried.stderr
        assert out.cli("run", "--until-idle", env=env, timeout=120).returncode == 0

        for args in (
            ["status", "--batch", "faults"],
            ["status", "--json"],
            ["show", inbound[0]],
            ["show", outbound[0], "--json"],
            ["show", inbound[-1], "--json"],
            *(["show", r.party_id, "--json"] for r in attention[:3]),
            ["report", "--batch", "faults", "--format", "json"],
            ["report", "--batch", "faults", "--format", "csv"],
            ["report", "--batch", "faults", "--format", "html", "--out", str(folder / "report.html")],
            ["report", "--batch", "faults", "--format", "csv", "--out", str(folder / "report.csv")],
            ["report", "--batch", "faults", "--format", "json", "--out", str(folder / "report.json")],
            ["audit", "verify"],
        ):
            assert out.cli(*args, env=env).returncode == 0, args
        # Every file of the run as bytes: the database, the WALs, the reports, the logs. The batch
        # file holds the inbound keys on purpose (the operator's input); no outbox exists (the
        # handoff is https), and a `keys export` file would hold keys by design too.
        files = file_texts(folder, skip={"b.csv": "the inbound keys, as the operator gave them"})
        assert {"faults.db", "mid-run.db-wal", "end.db-wal", "report.html", "report.csv", "report.json"} <= set(files)
        assert len(files["mid-run.db-wal"]) > 0 and len(files["end.db-wal"]) > 0, "no WAL was read"
        return FaultRun(
            db_url=db_url,
            parties=inbound + outbound,
            outbound=outbound,
            calls=sandbox.model.calls(),
            gateway=gateway.calls(),
            provider_log=sandbox.model.provider_log(),
            secrets=secrets_to_find(sandbox, *keys.values()),
            tokens_issued=len(sandbox.model.tokens.issued()),
            revoked=revoked,
            texts=out.everything() | {"database": database_text(db_url)} | files,
            attention=attention,
            attention_status=attention_status,
        )


def _post_json(url: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def _at(call: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(call["at"])


def _bad_hour(calls: list[dict[str, Any]], run: FaultRun) -> list[dict[str, Any]]:
    """Those of ``calls`` made in the bad hour (until the last fault; the retry came after it)."""
    last_fault = max(_at(c) for c in run.calls + run.gateway if c["fault"])
    return [c for c in calls if _at(c) <= last_fault]


def needs_attention_is_what_the_defaults_predict(run: FaultRun) -> None:
    calls = _bad_hour(run.calls + run.gateway, run)
    p = sum(c["fault"] is not None for c in calls) / len(calls)  # the share of calls that failed
    predicted = sum(
        (PARTIES // 2) * (1 - (1 - p) ** k) ** MAX_ATTEMPTS for k in CALLS_PER_TRY.values()
    )  # each state is met once by each party of its direction
    attention = run.attention
    assert run.attention_status == len(attention)
    assert len(attention) <= predicted + 4 * sqrt(predicted) + 2, (len(attention), predicted)
    for r in attention:
        assert r.failed_state is not None and (r.direction.value, r.failed_state.value) in CALLS_PER_TRY, r
        assert r.attempts == MAX_ATTEMPTS, (r.party_id, r.attempts)  # it gave up at the default, not before
        assert f"gave up after {MAX_ATTEMPTS} attempts" in (r.last_error or ""), r.last_error
        assert INJECTED.search(r.last_error or ""), (r.last_error_code, r.last_error)
    where = Counter(f"{r.direction.value} {r.failed_state.value if r.failed_state else '?'}" for r in attention)
    print(
        f"\nFIGURES attention: {len(attention)} of {PARTIES} needed attention at retry.max_attempts "
        f"{MAX_ATTEMPTS} with {p:.1%} of calls failing (predicted {predicted:.1f}): {dict(where) or 'none'}; "
        f"all completed after one `retry --batch`"
    )


def every_party_completes_after_one_retry(run: FaultRun) -> None:
    store = Store(run.db_url, clock=SystemClock(), audit_key=TEST_AUDIT_KEY)
    records = list(store.list_migrations())
    assert sorted(r.party_id for r in records) == sorted(run.parties)
    assert Counter(r.state.value for r in records) == {"completed": PARTIES}
    paths = moves_by_migration(store)
    failed = {r.party_id: r.failed_state for r in run.attention}
    for r in records:
        want = expected_moves(r.direction)
        if r.party_id in failed:
            state = failed[r.party_id]
            assert state is not None
            at = next((i + 1 for i, (_, to) in enumerate(want) if to == state.value), 0)
            want = [*want[:at], (state.value, "needs_attention"), *want[at:]]
        assert paths[r.party_id] == want, f"{r.party_id}: a transition twice or missing"
    assert store.verify_audit() == []
    store.close()
    logged = "".join(run.texts[name] for name in run.texts if name.startswith("process-"))
    assert "Traceback" not in logged

    faults = Counter(c["fault"] for c in run.calls)
    total = len(run.calls)
    bad_hour = _bad_hour(run.calls, run)
    shares = {
        "error": faults["error"] / len(bad_hour),
        "throttled": faults["throttled"] / len(bad_hour),
        "dropped": (faults["dropped_before"] + faults["dropped_after"]) / len(bad_hour),
    }
    for kind, wanted in SHARES.items():
        assert abs(shares[kind] - wanted) < 0.03, (kind, shares[kind])
    unauthorized = sum(c["status"] == 401 for c in run.calls)
    assert unauthorized >= 1 and run.revoked >= 1  # the revocation was noticed, and survived
    assert run.tokens_issued > 3  # tokens expired and were renewed along the way
    token_faults = Counter(c["fault"] for c in run.gateway if c["path"] == "/connect/token")
    # The gateway's token faults are drawn in request order from a seeded generator: the 3rd to
    # 6th token requests fail (error, error, dropped, throttled), and the run makes more than 6.
    assert token_faults["error"] >= 2 and token_faults["dropped"] >= 1 and token_faults["throttled"] >= 1
    print(
        f"\nFIGURES faults: {PARTIES} parties, {PARTIES} completed, 0 lost; {total} API calls; "
        f"injected: {faults['error']} x 500/503 ({shares['error']:.1%}), {faults['throttled']} x 429 "
        f"({shares['throttled']:.1%}), {faults['dropped_before']} dropped before + {faults['dropped_after']} "
        f"after processing ({shares['dropped']:.1%}), {faults['rate_limited']} x 429 over the sandbox's "
        f"{SANDBOX_RPS} rps; token requests: {dict(token_faults)}; {run.revoked} tokens revoked -> "
        f"{unauthorized} x 401 refreshed; {run.tokens_issued} tokens issued (ttl {TOKEN_TTL_S:g} s)"
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
    for c in run.gateway:
        if c["partyId"]:
            by_party.setdefault(f"handoff {c['partyId']}", []).append(c)
    throttled: Counter[bool] = Counter()
    by_party.pop(None, None)  # a PUT of user permissions answered by a fault names no party
    for who, calls in by_party.items():
        for this, after in pairwise(calls):
            if this["status"] == 429:
                throttled[str(who).startswith("handoff")] += 1
                assert _at(after) - _at(this) >= timedelta(seconds=1), (this, after)  # Retry-After: 1
    assert throttled[False] > 50 and throttled[True] >= 1, throttled


def each_key_is_handed_over_exactly_once(run: FaultRun) -> None:
    posts = [c for c in run.gateway if c["path"].endswith("/handoff")]
    passed = Counter(c["partyId"] for c in posts if c["fault"] is None)
    faulted = Counter(c["fault"] for c in posts if c["fault"] is not None)
    assert passed == dict.fromkeys(run.outbound, 1), "a key was handed over twice, or not at all"
    assert all(c["status"] == 202 for c in posts if c["fault"] is None)
    taken = Counter((e["partyId"], e["source"], e["outcome"]) for e in run.provider_log)
    assert taken == {(p, "handoff", "migrated"): 1 for p in run.outbound}, "a takeover twice, or failed"
    assert all(e["provider"] == PROVIDER for e in run.provider_log)
    assert sum(faulted.values()) >= 10 and set(faulted) == {"error", "throttled", "dropped"}, faulted
    print(
        f"\nFIGURES handoff: {len(run.outbound)} keys handed over once each; {len(posts)} POSTs, "
        f"{sum(faulted.values())} answered by the gateway's faults {dict(faulted)}"
    )


def no_key_token_or_secret_shows_anywhere(run: FaultRun) -> None:
    assert len(run.secrets) > PARTIES  # a key per party at least, the tokens, the secrets
    assert len(run.texts) >= 20 and any('"action": "transition"' in t for t in run.texts.values())
    assert leaks(run.texts, run.secrets) == []
    print(f"\nFIGURES leaks: {len(run.secrets)} secrets searched in {len(run.texts)} outputs and files, none found")
