"""How an outbound migration key reaches the new provider (``handoff.mode``).

- ``outbox``: one CSV per batch in ``handoff.outbox_dir`` (created with mode 0600), a row
  per key: party_id, migration_key, issued_at, new_provider. The new provider (or an
  operator) collects the file out of band, as the Peppol protocol expects.
- ``https``: a POST of ``{"partyId", "migrationKey"}`` to the new provider's endpoint
  (``handoff.endpoint``, ``{new_provider}`` replaced by the row's new provider).
- ``manual``: nothing is sent; the migration waits in ``key_issued`` until an operator runs
  ``keys export``.

These files are the one place a key is written in clear, on purpose: they are the handoff.
"""

from __future__ import annotations

import csv
import io
import os
import re
import threading
from datetime import datetime
from pathlib import Path
from typing import Protocol

from migration_engine.psb.client import PsbClient


class Handoff(Protocol):
    """Delivers one key; raises on failure (``PsbTransientError`` is retried)."""

    mode: str

    def deliver(
        self,
        *,
        psb: PsbClient,
        batch_name: str | None,
        party_id: str,
        key: str,
        issued_at: datetime | None,
        new_provider: str | None,
    ) -> dict[str, str]:
        """Hand the key over; returns what the audit may record (never the key)."""


_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def outbox_file(folder: Path, batch_name: str | None) -> Path:
    name = _SAFE_NAME.sub("_", batch_name or "no-batch").strip("._") or "batch"
    return folder / f"{name}.keys.csv"


def append_private_csv(path: Path, header: list[str], row: list[str]) -> None:
    """Append a row to a CSV that only its owner may read (0600), writing the header once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.fchmod(fd, 0o600)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        if os.fstat(fd).st_size == 0:
            writer.writerow(header)
        writer.writerow(row)
        os.write(fd, buf.getvalue().encode("utf-8"))
    finally:
        os.close(fd)


class OutboxHandoff:
    mode = "outbox"
    HEADER = ("party_id", "migration_key", "issued_at", "new_provider")

    def __init__(self, folder: str | Path) -> None:
        self._folder = Path(folder)
        self._lock = threading.Lock()

    def deliver(
        self,
        *,
        psb: PsbClient,
        batch_name: str | None,
        party_id: str,
        key: str,
        issued_at: datetime | None,
        new_provider: str | None,
    ) -> dict[str, str]:
        path = outbox_file(self._folder, batch_name)
        row = [party_id, key, issued_at.isoformat() if issued_at else "", new_provider or ""]
        with self._lock:
            append_private_csv(path, list(self.HEADER), row)
        return {"handoff": "outbox", "file": str(path)}


class HttpsHandoff:
    mode = "https"

    def __init__(self, endpoint: str) -> None:
        self._endpoint = endpoint

    def deliver(
        self,
        *,
        psb: PsbClient,
        batch_name: str | None,
        party_id: str,
        key: str,
        issued_at: datetime | None,
        new_provider: str | None,
    ) -> dict[str, str]:
        url = self._endpoint.replace("{new_provider}", new_provider or "")
        psb.post_handoff(url, party_id, key)
        return {"handoff": "https", "endpoint": url}


def make_handoff(mode: str, *, outbox_dir: str, endpoint: str) -> Handoff | None:
    """The configured handoff, or None for ``manual``."""
    if mode == "outbox":
        return OutboxHandoff(outbox_dir)
    if mode == "https":
        return HttpsHandoff(endpoint)
    return None
