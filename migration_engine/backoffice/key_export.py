"""`keys export`: an operator hands a batch's outbound keys over as one file.

With ``handoff.mode = "manual"`` an outbound migration waits in ``key_issued`` after eConnect
issued its key; this writes those keys to a CSV (``party_id, migration_key, issued_at,
new_provider``, the outbox's columns) that only its owner may read (mode 0600), then moves
each migration to ``key_delivered`` (trigger ``key_handed_off``) with an ``operator`` audit
event that shows the key masked. From there the worker polls for the new provider's
takeover, and the key's ``keys.ttl_h`` counts as for any other handoff.

Order: the file is written and flushed to disk first, the moves come after. A crash in
between leaves a complete file whose migrations are still in ``key_issued``; running the
export again writes them again (the same keys: eConnect issued them once), so nothing is
lost, and a migration is never marked delivered without its key in a file. The moves are
compare-and-sets: one that a worker moved meanwhile (in outbox or https mode the worker hands
keys over too) is reported as skipped, and its key, being in the file, is merely delivered
twice, which the receiver can ignore.

This file and the outbox are the only places a key is written in clear, on purpose.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from migration_engine.engine import changes
from migration_engine.engine.changes import Actor
from migration_engine.engine.handoff import OutboxHandoff
from migration_engine.errors import InputError, StoredKeyUnreadable
from migration_engine.keys import KeyVault, mask
from migration_engine.machine import Direction, State, Trigger
from migration_engine.settings import Settings
from migration_engine.store import MigrationRecord, Store

ACTION = "keys export"
log = logging.getLogger("migration_engine.backoffice.key_export")


@dataclass(frozen=True)
class Skipped:
    """A migration of the batch that was not exported, and why."""

    party_id: str
    state: str
    why: str


@dataclass
class ExportResult:
    """What an export did. Never holds a key."""

    batch: str
    file: str | None  # None when there was nothing to export (no file is written then)
    exported: list[str] = field(default_factory=list)  # party ids written to the file
    delivered: list[str] = field(default_factory=list)  # party ids moved to key_delivered
    skipped: list[Skipped] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "batch": self.batch,
            "file": self.file,
            "exported": len(self.exported),
            "delivered": len(self.delivered),
            "parties": self.exported,
            "skipped": [s.__dict__ for s in self.skipped],
        }


def _candidates(store: Store, batch_name: str, result: ExportResult) -> list[MigrationRecord]:
    chosen = []
    for record in store.list_migrations(batch_name=batch_name, states=[State.KEY_ISSUED]):
        if record.direction is not Direction.FROM_ECONNECT:
            continue  # an inbound key_issued is the PSB's to use, not ours to hand out
        if record.paused:
            result.skipped.append(Skipped(record.party_id, record.state.value, "paused: resume it first"))
        elif record.key_ciphertext is None:
            result.skipped.append(Skipped(record.party_id, record.state.value, "no key stored"))
        else:
            chosen.append(record)
    return chosen


def _write_private(path: Path, text: str, *, force: bool) -> None:
    """Create ``path`` with mode 0600 (never wider, whatever the umask) and write ``text`` durably.

    Without ``force`` an existing file is refused (``O_EXCL``): a key file is not overwritten
    by accident. With it, the new content goes to a fresh 0600 file that replaces the old one.
    """
    target = path
    try:
        if force and path.exists():
            fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
            target = Path(name)
        else:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InputError(f"{path} exists; choose another --out or add --force to replace it") from None
    except OSError as exc:
        raise InputError(f"cannot create {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o600)
            fh.write(text.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    if target != path:
        os.replace(target, path)


def _deliver(store: Store, settings: Settings, record: MigrationRecord, *, key: str, file: Path, actor: str) -> bool:
    """Move one exported migration on as handed off (to ``key_delivered``, by the state table)."""
    change = changes.move(
        record,
        Trigger.KEY_HANDED_OFF,
        by=Actor.operator(actor),
        settings=settings,
        now=store.clock.now(),
        detail={"action": ACTION, "handoff": "export", "file": str(file), "key": mask(key)},
    )
    return store.apply(change) is not None


def export_keys(
    store: Store,
    vault: KeyVault,
    settings: Settings,
    *,
    batch_name: str,
    out: str | Path,
    actor: str,
    force: bool = False,
) -> ExportResult:
    """Write the batch's waiting outbound keys to ``out`` (0600), then mark them delivered."""
    if store.batch_info(batch_name) is None:
        raise InputError(f"there is no batch named {batch_name!r}")
    path = Path(out)
    if path.exists() and not force:
        raise InputError(f"{path} exists; choose another --out or add --force to replace it")
    result = ExportResult(batch=batch_name, file=None)
    # Decrypt everything before writing anything. A wrong key-encryption key never gets here
    # (the vault is checked first); a key that does not open for its row (moved from another
    # row, altered) skips just that row, which stays key_issued.
    records, keys = [], []
    for record in _candidates(store, batch_name, result):
        try:
            keys.append(vault.decrypt(record.key_ciphertext or "", migration_id=record.id, party_id=record.party_id))
        except StoredKeyUnreadable as exc:
            result.skipped.append(Skipped(record.party_id, record.state.value, str(exc)))
            continue
        records.append(record)
    if not records:
        return result
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(OutboxHandoff.HEADER)
    for record, key in zip(records, keys, strict=True):
        issued = record.key_issued_at.isoformat() if record.key_issued_at else ""
        writer.writerow([record.party_id, key, issued, record.new_provider or ""])
    _write_private(path, buf.getvalue(), force=force)
    del buf
    result.file = str(path)
    result.exported = [r.party_id for r in records]
    # The file is on disk: only now may the migrations count as handed over.
    for record, key in zip(records, keys, strict=True):
        if _deliver(store, settings, record, key=key, file=path, actor=actor):
            result.delivered.append(record.party_id)
            log.info(
                f"key_issued -> key_delivered: key {mask(key)} exported to {path}",
                extra={"action": "keys.export", "party_id": record.party_id, "migration_id": record.id},
            )
        else:
            fresh = store.get(record.id)
            state = fresh.state.value if fresh else record.state.value
            why = "moved by a worker meanwhile; its key is in the file"
            result.skipped.append(Skipped(record.party_id, state, why))
    return result
