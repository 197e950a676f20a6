"""The obvious alternative: a plain script that migrates the parties one after another.

An httpx loop making the same calls as the engine, party by party, with no persistence,
no audit trail and no retries: what a provider might write in an afternoon. With
``threads > 1`` the same loop runs on that many threads: the bench's *raw* loop, a bare
httpx client at the engine's concurrency against the same sandbox.

The client is built as the engine's PSB client builds its own (no cookie jar, the same
connection limits, timeout, headers and redirect policy) and the loop runs under the same
switch interval as the engine (the CLI's ``serving_switch_interval``), so a ratio of the two
measures the engine's own work.

To eConnect (8 calls): PUT config {migration: key}, GET deliveryOption (taken over?),
PUT config {capabilities}, GET hooks, PUT hook, PUT user party, PUT enroll, GET deliveryOption.
From eConnect (5 calls + the handoff): GET prepareToMigrate, POST the key to the new
provider, GET deliveryOption (taken over?), GET config (gone?), GET hooks, DELETE user party.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import quote

import httpx

from bench.parties import PROVIDER, TO, Party
from migration_engine import __version__
from migration_engine.cli.serving import serving_switch_interval
from migration_engine.psb.client import CookielessClient

AP_URL = "https://accp-ap.econnect.eu/as4/v1"
USER = "sandbox-user"
CAPABILITIES = {"invoices": {"state": "on"}, "invoiceResponse": {"state": "on"}, "orders": {"state": "inherited"}}
HOOK = {
    "name": "invoice-received",
    "action": "mailto:peppol-inbox@example.com?version=1.0",
    "topics": ["InvoiceReceived"],
    "isActive": True,
}
PERMISSIONS = {
    "canSendDocument": True,
    "canReceiveDocument": True,
    "canRemoveDocument": False,
    "canManageHook": True,
    "canChangeDocumentStatus": True,
}


def _seg(value: str) -> str:
    return quote(value, safe="")


def bare_client(threads: int) -> httpx.Client:
    """The engine's own client class (no cookie jar) with the engine's settings at concurrency
    ``threads`` (the engine's runtime
    gives its PSB client ``max(16, 2 x concurrency)`` connections, a 30 s timeout, no redirects)."""
    connections = max(16, 2 * threads)
    return CookielessClient(
        timeout=httpx.Timeout(30.0),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        headers={"Accept": "application/json", "User-Agent": f"peppol-migrate/{__version__}"},
        follow_redirects=False,
    )


@dataclass(frozen=True)
class LoopRun:
    seconds: float  # wall clock of the loop
    cpu_s: float  # CPU time of this process during the loop (all its threads)


class NaiveMigrator:
    """Migrates one party at a time with a shared httpx client (thread-safe)."""

    def __init__(self, base_url: str, *, connections: int = 1) -> None:
        self.base = base_url.rstrip("/")
        self.http = bare_client(connections)
        form = {
            "grant_type": "client_credentials",
            "scope": "ap",
            "client_id": "sandbox-client",
            "client_secret": "sandbox-secret",
        }
        token = self.http.post(f"{self.base}/connect/token", data=form)
        token.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

    def _ours(self, pid: str) -> tuple[bool, bool]:
        """(served by eConnect's access point, served by anyone) as a sender's lookup sees it."""
        answer = self.http.get(f"{self.base}/api/v1/peppol/deliveryOption", params={"partyIds": pid})
        answer.raise_for_status()
        urls = {o.get("url") for o in answer.json()}
        return AP_URL in urls, bool(urls)

    def inbound(self, party: Party) -> None:
        pid, seg = party.party_id, _seg(party.party_id)
        config = f"{self.base}/api/v1/peppol/config/party/{seg}"
        self.http.put(config, json={"migration": {"key": party.key}}).raise_for_status()
        if not self._ours(pid)[0]:
            raise RuntimeError(f"{pid}: not taken over")
        self.http.put(config, json={"capabilities": CAPABILITIES}).raise_for_status()
        hooks = self.http.get(f"{self.base}/api/v1/{seg}/hook")
        hooks.raise_for_status()
        if not any(h.get("name") == HOOK["name"] for h in hooks.json()):
            self.http.put(f"{self.base}/api/v1/{seg}/hook", json=HOOK).raise_for_status()
        user_party = {"id": pid, "name": f"Customer {pid}", "permissions": PERMISSIONS}
        self.http.put(f"{self.base}/api/v1/user/{USER}/party", json=user_party).raise_for_status()
        card = {
            "names": f"Customer {pid}",
            "countryCode": "NL",
            "geoInfo": "Netherlands",
            "email": "peppol@example.com",
        }
        enroll = {"services": {"peppol": {"businessCard": card}}}
        self.http.put(f"{self.base}/api/v1-beta/{seg}/enroll", json=enroll).raise_for_status()
        if not self._ours(pid)[0]:
            raise RuntimeError(f"{pid}: not reachable through eConnect")

    def outbound(self, party: Party) -> None:
        pid, seg = party.party_id, _seg(party.party_id)
        prepared = self.http.get(f"{self.base}/api/v1/peppol/{seg}/prepareToMigrate")
        prepared.raise_for_status()
        handoff = {"partyId": pid, "migrationKey": prepared.json()["migrationKey"]}
        self.http.post(f"{self.base}/sandbox/providers/{PROVIDER}/handoff", json=handoff).raise_for_status()
        ours, anyone = self._ours(pid)
        if ours or not anyone:
            raise RuntimeError(f"{pid}: not taken over")
        if self.http.get(f"{self.base}/api/v1/peppol/config/party/{seg}").status_code != 404:
            raise RuntimeError(f"{pid}: still at eConnect")
        hooks = self.http.get(f"{self.base}/api/v1/{seg}/hook")
        hooks.raise_for_status()
        for hook in hooks.json():
            self.http.delete(f"{self.base}/api/v1/{seg}/hook/{_seg(str(hook['id']))}")
        self.http.delete(f"{self.base}/api/v1/user/{USER}/party/{seg}")

    def migrate(self, party: Party) -> None:
        (self.inbound if party.direction == TO else self.outbound)(party)

    def close(self) -> None:
        self.http.close()


def run(base_url: str, parties: Sequence[Party], *, threads: int = 1) -> LoopRun:
    """Migrate every party (on ``threads`` threads); the loop's wall-clock and CPU seconds."""
    migrator = NaiveMigrator(base_url, connections=threads)
    try:
        with serving_switch_interval():
            started, cpu_started = time.perf_counter(), time.process_time()
            if threads == 1:
                for party in parties:
                    migrator.migrate(party)
            else:
                queue = iter(parties)
                lock = threading.Lock()

                def loop() -> None:
                    while True:
                        with lock:
                            party = next(queue, None)
                        if party is None:
                            return
                        migrator.migrate(party)

                with ThreadPoolExecutor(threads) as pool:
                    for future in [pool.submit(loop) for _ in range(threads)]:
                        future.result()
            return LoopRun(time.perf_counter() - started, time.process_time() - cpu_started)
    finally:
        migrator.close()
