"""How an outbound migration key reaches the new provider (``handoff.mode``).

- ``outbox``: one CSV per batch and new provider in ``handoff.outbox_dir`` (created with mode
  0600), a row per key: party_id, migration_key, issued_at, new_provider. The new provider
  (or an operator) collects the file out of band, as the Peppol protocol expects. A file
  holds one provider's keys only, so it can go to that provider as it is; its name carries a
  short hash of the exact batch name and provider, since two names can read alike once made
  safe for a file name (``a/b`` and ``a_b``), and two batches must never share a file. The
  file is opened without following a symbolic link and must be a regular file of ours with
  one link: a link planted in the folder would send the keys somewhere else.
- ``https``: a POST of ``{"partyId", "migrationKey"}`` to the new provider's endpoint
  (``handoff.endpoint``, ``{new_provider}`` replaced by the row's new provider), through
  ``psb.key_poster.KeyPoster``: another provider's API, not the PSB, so none of the PSB
  client's credentials; a timeout or a 5xx is a ``PsbTransientError`` the worker retries.
- ``manual``: nothing is sent; the migration waits in ``key_issued`` until an operator runs
  ``keys export``.

The worker gives each step a ``recording`` view, so the POST lands in the audit trail as an
``api_call`` event like the step's PSB calls. These files and POSTs are the one place a key
leaves in clear, on purpose: they are the handoff.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import stat
import threading
from datetime import datetime
from pathlib import Path
from typing import Protocol

from migration_engine.clock import Clock
from migration_engine.errors import PsbPermanentError
from migration_engine.psb.endpoints import safe_url
from migration_engine.psb.key_poster import CallSink, KeyPoster
from migration_engine.settings import Settings


class Handoff(Protocol):
    """Delivers one key; raises on failure (``PsbTransientError`` is retried)."""

    mode: str

    def recording(self, sink: CallSink) -> Handoff:
        """A view that reports each HTTP exchange to ``sink`` (for the step's audit events)."""

    def deliver(
        self,
        *,
        batch_name: str | None,
        party_id: str,
        key: str,
        issued_at: datetime | None,
        new_provider: str | None,
    ) -> dict[str, str]:
        """Hand the key over; returns what the audit may record (never the key)."""

    def close(self) -> None:
        """Release what the handoff holds (a connection pool); a no-op on a view."""


_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_NAME_PART_MAX = 80  # two parts, a hash and the suffix stay well under a 255-byte file name


def _safe_part(value: str | None, missing: str) -> str:
    return _SAFE_NAME.sub("_", value or missing).strip("._")[:_NAME_PART_MAX] or missing


def outbox_file(folder: Path, batch_name: str | None, new_provider: str | None) -> Path:
    """``<batch>.<provider>.<hash>.keys.csv``: readable parts, and a hash of the exact pair
    (``None`` apart from any name) so that names which read alike never share a file."""
    exact = json.dumps([batch_name, new_provider]).encode("utf-8")
    digest = hashlib.sha256(exact).hexdigest()[:12]
    batch = _safe_part(batch_name, "no-batch")
    provider = _safe_part(new_provider, "no-provider")
    return folder / f"{batch}.{provider}.{digest}.keys.csv"


class UnsafeOutboxFile(PsbPermanentError):
    """The outbox path is a link, not a regular file, or not ours: nothing was written. The
    same would happen again until an operator removes it, so the migration fails."""


def _refuse(path: Path, why: str) -> UnsafeOutboxFile:
    return UnsafeOutboxFile(
        f"the outbox file {path} {why}; nothing was written to it: remove it and retry the migration",
        code="HANDOFF.FILE01",
    )


def append_private_csv(path: Path, header: list[str], row: list[str]) -> None:
    """Append a row to a CSV that only its owner may read (0600), writing the header once.

    ``O_NOFOLLOW`` refuses a symbolic link at the path; ``O_NONBLOCK`` keeps a planted FIFO
    from hanging the worker. What was opened must be a regular file of ours with one link
    (``UnsafeOutboxFile`` otherwise), so no key is written where someone else can read it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, 0o600)
    except OSError:
        if path.is_symlink():
            raise _refuse(path, "is a symbolic link") from None
        if path.exists() and not path.is_file():
            raise _refuse(path, "is not a regular file") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _refuse(path, "is not a regular file")
        if info.st_uid != os.geteuid():
            raise _refuse(path, f"belongs to another user (uid {info.st_uid})")
        if info.st_nlink != 1:
            raise _refuse(path, f"has {info.st_nlink} hard links")
        os.fchmod(fd, 0o600)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        if info.st_size == 0:
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

    def recording(self, sink: CallSink) -> OutboxHandoff:
        return self  # a file, no HTTP exchange to report

    def close(self) -> None:
        return None

    def deliver(
        self,
        *,
        batch_name: str | None,
        party_id: str,
        key: str,
        issued_at: datetime | None,
        new_provider: str | None,
    ) -> dict[str, str]:
        path = outbox_file(self._folder, batch_name, new_provider)
        row = [party_id, key, issued_at.isoformat() if issued_at else "", new_provider or ""]
        with self._lock:
            append_private_csv(path, list(self.HEADER), row)
        return {"handoff": "outbox", "file": str(path)}


class HttpsHandoff:
    mode = "https"

    def __init__(self, endpoint: str, poster: KeyPoster) -> None:
        self._endpoint = endpoint
        self._poster = poster

    def recording(self, sink: CallSink) -> HttpsHandoff:
        return HttpsHandoff(self._endpoint, self._poster.recording(sink))

    def close(self) -> None:
        self._poster.close()

    def deliver(
        self,
        *,
        batch_name: str | None,
        party_id: str,
        key: str,
        issued_at: datetime | None,
        new_provider: str | None,
    ) -> dict[str, str]:
        url = self._endpoint.replace("{new_provider}", new_provider or "")
        self._poster.post(url, party_id=party_id, key=key)
        return {"handoff": "https", "endpoint": safe_url(url)}  # without a query that may hold a token


def make_handoff(settings: Settings, *, clock: Clock) -> Handoff | None:
    """The configured handoff (``handoff.*``; the POST's timeout is ``psb.timeout_s``), or None
    for ``manual``. The caller closes it."""
    h = settings.handoff
    if h.mode == "outbox":
        return OutboxHandoff(h.outbox_dir)
    if h.mode == "https":
        return HttpsHandoff(h.endpoint, KeyPoster(timeout_s=settings.psb.timeout_s, clock=clock))
    return None
