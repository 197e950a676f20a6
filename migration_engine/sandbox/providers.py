"""Other Peppol providers: their access points, the takeovers they will do later (a key was
handed to them, or they got it out of band), and a log of what they did.

Pure data; ``SandboxModel`` runs the takeovers against the SML under its lock.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from migration_engine.sandbox.common import SandboxError, iso
from migration_engine.sandbox.config import ECONNECT, ProviderConfig


@dataclass(order=True)
class Takeover:
    """A Migrate call a provider will make at ``due``."""

    due: datetime
    seq: int
    provider: str = field(compare=False)
    party: str = field(compare=False)
    key: str = field(compare=False)
    source: str = field(compare=False)  # handoff | auto


class Providers:
    def __init__(self, providers: tuple[ProviderConfig, ...]) -> None:
        self.ap_urls: dict[str, str] = {p.name: p.ap_url for p in providers}
        self.default = providers[0].name
        self._pending: list[Takeover] = []
        self._seq = itertools.count(1)
        self._log: list[dict[str, Any]] = []

    def add(self, name: str, ap_url: str) -> None:
        if not name or name == ECONNECT or "/" in name:
            raise SandboxError(400, "a provider needs a name (no '/') other than 'econnect'")
        if not ap_url:
            raise SandboxError(400, "a provider needs an access point URL (apUrl)")
        self.ap_urls[name] = ap_url

    def require(self, name: str) -> str:
        if name not in self.ap_urls:
            raise SandboxError(404, f"unknown provider {name!r}; known: {', '.join(self.ap_urls)}")
        return name

    def certificate(self, name: str) -> str:
        return f"MIIFsandbox{name}certificate=="

    def schedule(self, provider: str, party: str, key: str, due: datetime, source: str) -> None:
        heapq.heappush(self._pending, Takeover(due, next(self._seq), provider, party, key, source))

    def pop_due(self, now: datetime) -> Takeover | None:
        if self._pending and self._pending[0].due <= now:
            return heapq.heappop(self._pending)
        return None

    def pending(self) -> list[dict[str, Any]]:
        return [
            {"due": iso(t.due), "provider": t.provider, "partyId": t.party, "source": t.source}
            for t in sorted(self._pending)
        ]

    def record(self, at: datetime, provider: str, party: str, source: str, outcome: str) -> None:
        self._log.append(
            {"at": iso(at), "provider": provider, "partyId": party, "source": source, "outcome": outcome}
        )

    def log(self) -> list[dict[str, Any]]:
        return [dict(entry) for entry in self._log]
