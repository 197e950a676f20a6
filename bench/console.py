"""``python -m bench.console [--parties N] [--rounds N] [--postgres-url URL]``: the console on a
campaign of 100,000 parties; every page and API call, median and worst time per route.

The database is seeded fast: the import through the store (its ``created`` events), then bulk
SQL through the store's own tables for a realistic mix of states (most completed, some under
way, a few needing attention, with error codes) and three to five state-move events each,
spread over the last three days. These events are not hash-chained (the console reads them;
`audit verify` would refuse them): a benchmark database only.

The time is the app's, through Starlette's TestClient in this process (no network; the client's
own cost, about a millisecond, is included). The target is 300 ms per call. A report of the
whole batch (JSON/CSV/HTML of 100,000 rows) is an export, streamed as it is read: for it the
time to the FIRST BYTE is held to the target (shown as its median and worst), and the whole
download's time is shown beside it (seconds: 100,000 rows cannot be sent in 300 ms).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from migration_engine.clock import ManualClock
from migration_engine.console.app import create_app
from migration_engine.console.auth import SESSION_COOKIE, hash_secret
from migration_engine.engine.runtime import Runtime
from migration_engine.machine import Direction, State
from migration_engine.settings import ConsoleSettings, load_settings
from migration_engine.store import NewMigration, Store
from migration_engine.store.schema import audit_events, migrations

TARGET_MS = 300.0
DEFAULT_PARTIES = 100_000
DEFAULT_ROUNDS = 15
BATCH = "campaign"
TOKEN = "bench-console-token-0123456789"
AUDIT_KEY = "bench-audit-key-0123456789abcdef"
EXPORTS = ("report json",)  # streamed exports of the whole batch: the first byte is held to the target
# The mix of states, per 100 parties (the direction decides which of these it can be in).
MIX_IN = [(State.COMPLETED, 60), (State.REQUESTED, 12), (State.TAKEOVER_SUBMITTED, 8),
          (State.CAPABILITIES_CONFIGURED, 5), (State.NEEDS_ATTENTION, 8), (State.KEY_REJECTED, 5),
          (State.CANCELLED, 2)]  # fmt: skip
MIX_OUT = [(State.COMPLETED, 60), (State.REQUESTED, 12), (State.KEY_DELIVERED, 13), (State.NEEDS_ATTENTION, 8),
           (State.KEY_EXPIRED, 5), (State.CANCELLED, 2)]  # fmt: skip
CODES = ("PSB_TIMEOUT", "SMP_MISMATCH", "KEY_INVALID", "CAPABILITY_FAILED", "HTTP_500")


def party_id(i: int) -> str:
    return f"0106:{30_000_000 + i:08d}"


def _state_of(i: int, direction: Direction) -> State:
    mix = MIX_IN if direction is Direction.TO_ECONNECT else MIX_OUT
    slot = (i * 37) % 100
    for state, share in mix:
        if slot < share:
            return state
        slot -= share
    return State.COMPLETED


def seed(store: Store, clock: ManualClock, parties: int, *, now: datetime) -> None:
    """The import (four days before ``now``, on ``clock``), then the mix of states and their
    events in bulk; the clock is at ``now`` after."""

    def items() -> Any:
        for i in range(parties):
            inbound = i % 2 == 0
            yield NewMigration(
                party_id=party_id(i),
                direction=Direction.TO_ECONNECT if inbound else Direction.FROM_ECONNECT,
                state=State.REQUESTED,
                profile="default" if inbound else None,
                name=f"Customer {i}",
                new_provider=None if inbound else f"provider-{'bcd'[i % 3]}",
                current_provider=f"provider-{'xyz'[i % 3]}" if inbound else None,
            )

    store.add_migrations(batch_name=BATCH, items=items(), actor="bench", chunk_size=5000)
    engine = sa.create_engine(_url(store), future=True)
    with engine.begin() as conn:
        rows = conn.execute(sa.select(migrations.c.id, migrations.c.direction).order_by(migrations.c.id)).all()
        updates: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        for n, (mid, direction) in enumerate(rows):
            d = Direction(direction)
            state = _state_of(n, d)
            if state is State.REQUESTED:
                continue
            moves = 3 + n % 3
            start = now - timedelta(hours=72) + timedelta(seconds=(n * 2.6) % (70 * 3600))
            prev = State.REQUESTED
            for k in range(moves):
                to = state if k == moves - 1 else State.KEY_ISSUED
                at = min(start + timedelta(minutes=20 * k), now - timedelta(seconds=1))
                events.append(
                    {
                        "migration_id": mid,
                        "seq": 2 + k,
                        "at": at,
                        "actor": "w1",
                        "kind": "transition",
                        "from_state": prev.value,
                        "to_state": to.value,
                        "detail": "{}",
                        "prev_hash": "",
                        "hash": "bench",
                    }
                )
                prev = to
            failed = state in (State.NEEDS_ATTENTION, State.KEY_REJECTED, State.KEY_EXPIRED)
            finished = state in (State.COMPLETED, State.CANCELLED)
            updates.append(
                {
                    "b_id": mid,
                    "state": state.value,
                    "event_seq": 1 + moves,
                    "started": start,
                    "code": CODES[n % len(CODES)] if failed else None,
                    "error": "a failure" if failed else None,
                    "completed": at if finished else None,
                }
            )
        conn.execute(
            migrations.update()
            .where(migrations.c.id == sa.bindparam("b_id"))
            .values(
                state=sa.bindparam("state"),
                event_seq=sa.bindparam("event_seq"),
                last_error_code=sa.bindparam("code"),
                last_error=sa.bindparam("error"),
                completed_at=sa.bindparam("completed"),
                started_at=sa.bindparam("started"),
                next_run_at=None,
            ),
            updates,
        )
        for start_at in range(0, len(events), 20_000):
            conn.execute(audit_events.insert(), events[start_at : start_at + 20_000])
    engine.dispose()
    clock.skip_to(now)
    analyze = store_engine(store)
    with analyze.begin() as conn:
        conn.execute(sa.text("ANALYZE"))  # fresh statistics, as a database a while in use has
    analyze.dispose()


def _url(store: Store) -> str:
    return store._db.engine.url.render_as_string(hide_password=False)


def store_engine(store: Store) -> sa.Engine:
    return sa.create_engine(_url(store), future=True)


def runtime(url: str, clock: ManualClock) -> Runtime:
    env = {
        "PEPPOL_MIGRATE_DATABASE__URL": url,
        "PEPPOL_MIGRATE_AUDIT__KEY": AUDIT_KEY,
        "PEPPOL_MIGRATE_VERIFY__ECONNECT_SMP_HOST": "smp.econnect.test",
    }
    settings = load_settings(env=env)
    console = ConsoleSettings(
        users=(f"bench:operator:{hash_secret('bench-password')}",),
        tokens=(f"bench-api:operator:{hash_secret(TOKEN)}",),
        session_key="bench-session-key-0123456789abcdef",
    )
    return Runtime(dataclasses.replace(settings, console=console), clock=clock)


def routes(first_party: str, attention_party: str) -> list[tuple[str, str]]:
    """(name, path) of every read the console answers: the API's and the pages'."""
    api = [
        ("api status", "/api/v1/status"),
        ("api batches", "/api/v1/batches"),
        ("api batch", f"/api/v1/batches/{BATCH}"),
        ("api batch status", f"/api/v1/batches/{BATCH}/status"),
        ("api migrations p1", f"/api/v1/batches/{BATCH}/migrations?limit=50"),
        ("api migrations deep", f"/api/v1/batches/{BATCH}/migrations?limit=50&after_id=90000"),
        ("api migrations state", f"/api/v1/batches/{BATCH}/migrations?state=needs_attention&limit=50"),
        ("api migrations code", f"/api/v1/batches/{BATCH}/migrations?error_code=HTTP_500&limit=50"),
        ("api migrations provider", f"/api/v1/batches/{BATCH}/migrations?new_provider=provider-c&limit=50"),
        ("api migrations state+code", f"/api/v1/batches/{BATCH}/migrations?state=key_rejected&error_code=HTTP_500"),
        ("api migrations plan_class", f"/api/v1/batches/{BATCH}/migrations?plan_class=ready&limit=50"),
        ("api chart 48h", f"/api/v1/batches/{BATCH}/chart?hours=48"),
        ("api chart 7d", f"/api/v1/batches/{BATCH}/chart?hours=168"),
        ("api schedule", f"/api/v1/batches/{BATCH}/schedule"),
        ("api forecast", f"/api/v1/batches/{BATCH}/forecast"),
        ("api plan", f"/api/v1/batches/{BATCH}/plan?limit=50"),
        ("api attention", "/api/v1/attention?limit=50"),
        ("api attention deep", "/api/v1/attention?limit=50&after_id=80000"),
        ("api party", f"/api/v1/parties/{attention_party}"),
        ("api openapi", "/api/v1/openapi.json"),
        ("report json", f"/api/v1/batches/{BATCH}/report?format=json"),
    ]
    pages = [
        ("page home", "/"),
        ("page batches", "/batches"),
        ("page batch", f"/batch?name={BATCH}"),
        ("page batch filtered", f"/batch?name={BATCH}&state=needs_attention"),
        ("page live", f"/live.json?batch={BATCH}"),
        ("page party", f"/party/{first_party}"),
        ("page attention", "/attention"),
        ("page import", "/import"),
        ("page audit", "/audit"),
    ]
    return api + pages


def measure(get: Callable[[str], Any], path: str, rounds: int) -> tuple[list[float], int]:
    times, status = [], 0
    for _ in range(rounds):
        t0 = time.perf_counter()
        r = get(path)
        times.append((time.perf_counter() - t0) * 1000)
        status = r.status_code
    return times, status


def measure_stream(client: Any, path: str, headers: dict[str, str], rounds: int) -> tuple[list[float], int, float]:
    """A streamed export: the times to its first byte, the status, the worst whole download (ms)."""
    first, whole, status = [], [], 0
    for _ in range(rounds):
        t0 = time.perf_counter()
        with client.stream("GET", path, headers=headers) as r:
            chunks = r.iter_bytes()
            next(chunks, b"")
            first.append((time.perf_counter() - t0) * 1000)
            for _chunk in chunks:
                pass
            status = r.status_code
        whole.append((time.perf_counter() - t0) * 1000)
    return first, status, max(whole)


def run(url: str | None = None, *, parties: int = DEFAULT_PARTIES, rounds: int = DEFAULT_ROUNDS) -> dict[str, Any]:
    from starlette.testclient import TestClient

    with tempfile.TemporaryDirectory(prefix="pm-console-bench-") as folder:
        url = url or f"sqlite:///{Path(folder) / 'console.db'}"
        now = datetime(2027, 3, 10, 12, 0, tzinfo=UTC)
        clock = ManualClock(now - timedelta(days=4))
        rt = runtime(url, clock)
        store = rt.store
        store.upgrade()
        t0 = time.perf_counter()
        seed(store, clock, parties, now=now)
        seeded_s = time.perf_counter() - t0
        first = store.console_attention_page(limit=1).items[0].party_id
        app = create_app(rt)
        auth = app.state.auth
        cookie, _ = auth.new_session(auth.users["bench"])
        results: list[dict[str, Any]] = []
        with TestClient(app) as client:
            client.cookies.set(SESSION_COOKIE, cookie)
            headers = {"Authorization": f"Bearer {TOKEN}"}
            for name, path in routes(party_id(0), first):
                get = (lambda p: client.get(p, headers=headers)) if path.startswith("/api/") else client.get
                get(path)  # warm: the first call of a route compiles its statements
                whole = None
                if name in EXPORTS:
                    times, status, whole = measure_stream(client, path, headers, 3)
                else:
                    times, status = measure(get, path, rounds)
                results.append(
                    {
                        "route": name,
                        "path": path,
                        "status": status,
                        "median_ms": round(statistics.median(times), 1),
                        "worst_ms": round(max(times), 1),
                        "export": name in EXPORTS,
                        "whole_ms": None if whole is None else round(whole, 1),
                    }
                )
        rt.close()
    dialect = "postgresql" if url.startswith("postgres") else "sqlite"
    return {"dialect": dialect, "parties": parties, "rounds": rounds, "seed_s": round(seeded_s, 1), "routes": results}


def table(result: dict[str, Any]) -> str:
    lines = [
        f"console on {result['dialect']}: {result['parties']} parties (seeded in {result['seed_s']} s), "
        f"{result['rounds']} calls per route; target {TARGET_MS:.0f} ms",
        f"{'route':<28} {'status':>6} {'median ms':>10} {'worst ms':>9}  ",
    ]
    for r in result["routes"]:
        mark = "ok" if r["worst_ms"] <= TARGET_MS else "SLOW"
        if r["export"]:
            mark += f" (first byte; whole download {r['whole_ms'] / 1000:.1f} s at worst)"
        if r["status"] == 404:
            mark = "no such route yet"
        lines.append(f"{r['route']:<28} {r['status']:>6} {r['median_ms']:>10} {r['worst_ms']:>9}  {mark}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__)
    parser.add_argument("--parties", type=int, default=DEFAULT_PARTIES)
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--postgres-url", help="also run on this PostgreSQL database (emptied first)")
    args = parser.parse_args(argv)
    print(table(run(parties=args.parties, rounds=args.rounds)))
    if args.postgres_url:
        print()
        print(table(run(args.postgres_url, parties=args.parties, rounds=args.rounds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
