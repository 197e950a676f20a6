"""The parties of a run: seeded in the sandbox over HTTP, written to a batch file, and the
engine's settings (as environment variables, the way a user configures it) for that sandbox."""

from __future__ import annotations

import csv
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from migration_engine.sandbox.client_env import client_env

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ROOT / "config" / "profiles"
PROVIDER = "provider-b"
TO, FROM = "to-econnect", "from-econnect"


@dataclass(frozen=True)
class Party:
    party_id: str
    direction: str  # to-econnect | from-econnect
    key: str | None  # inbound: the key the current provider issued


def party_id(i: int) -> str:
    return f"0106:{10_000_000 + i:08d}"


def seed(sandbox_url: str, count: int, *, start: int = 0, threads: int = 8) -> list[Party]:
    """Half to eConnect (registered at provider-b, which issues a key), half from it, interleaved."""

    def one(http: httpx.Client, i: int) -> Party:
        pid = party_id(start + i)
        if i % 2 == 0:
            http.post(f"{sandbox_url}/sandbox/parties", json={"partyId": pid, "owner": PROVIDER}).raise_for_status()
            answer = http.post(f"{sandbox_url}/sandbox/providers/{PROVIDER}/prepare", json={"partyId": pid})
            answer.raise_for_status()
            return Party(pid, TO, str(answer.json()["migrationKey"]))
        http.post(f"{sandbox_url}/sandbox/parties", json={"partyId": pid, "owner": "econnect"}).raise_for_status()
        return Party(pid, FROM, None)

    limits = httpx.Limits(max_connections=threads, max_keepalive_connections=threads)
    with httpx.Client(timeout=60.0, limits=limits) as http, ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda i: one(http, i), range(count)))


def write_batch(path: Path, parties: list[Party]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["party_id", "direction", "migration_key", "profile", "name", "new_provider"])
        for p in parties:
            if p.direction == TO:
                writer.writerow([p.party_id, TO, p.key or "", "default", f"Customer {p.party_id}", ""])
            else:
                writer.writerow([p.party_id, FROM, "", "", f"Customer {p.party_id}", PROVIDER])
    path.chmod(0o600)
    return path


def engine_env(db_url: str, sandbox_url: str, *, concurrency: int) -> dict[str, str]:
    """The engine's settings for a bench run: no client-side rate limit (the sandbox's latency
    is the limit under test), the https handoff to the sandbox's provider, short polls (the
    other provider takes over at once: the first poll finds it, whatever the period)."""
    return client_env(
        sandbox_url, db_url=db_url, profiles_dir=PROFILES, concurrency=concurrency, takeover_poll_s=0.05
    )
