"""Audit anchors: every migration's chain head at one moment, HMAC'd, to keep outside the database.

An anchor lists, per migration, its id, party id, event count and the hash of its last event,
plus ``root``: the HMAC-SHA256 under the audit key of all of them (and of the anchor's time and
key id). Kept where the database's users cannot rewrite it (write-once storage), it lets
`audit verify --anchor` find what the chains alone cannot: a migration deleted with all its
events, a chain cut short with ``event_seq`` fixed, a chain rewritten by someone holding the
key. An anchor is taken only of a trail that verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from migration_engine.errors import InputError
from migration_engine.store.audit import key_id, require_key
from migration_engine.store.audit_verify import walk
from migration_engine.store.database import Database
from migration_engine.store.records import AuditAnchor, BrokenLink, ChainHead

FORMAT = "peppol-migrate audit anchor"
VERSION = 1


def _root(key: bytes, written_at: datetime, kid: str, heads: Sequence[ChainHead]) -> str:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    mac.update(f"{FORMAT} {VERSION}\n{written_at.isoformat(timespec='microseconds')}\n{kid}\n".encode())
    for h in heads:
        mac.update((json.dumps([h.migration_id, h.party_id, h.seq, h.head], ensure_ascii=False) + "\n").encode())
    return mac.hexdigest()


def take(db: Database) -> tuple[AuditAnchor | None, list[BrokenLink]]:
    """The anchor of the trail as it is now, or (None, what is broken) when it does not verify."""
    key = require_key(db)
    heads: list[ChainHead] = []
    broken: list[BrokenLink] = []
    for item in walk(db):
        if isinstance(item, BrokenLink):
            broken.append(item)
        elif item.broken is not None:
            broken.append(item.broken)
        elif not broken:
            heads.append(item.head)
    if broken:
        return None, broken
    at = db.clock.now().astimezone(UTC)
    kid = key_id(key)
    return AuditAnchor(written_at=at, key_id=kid, heads=heads, root=_root(key, at, kid, heads)), []


def to_json(anchor: AuditAnchor) -> dict[str, Any]:
    """The anchor as a JSON object (the file `audit anchor` writes)."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "written_at": anchor.written_at.isoformat(timespec="microseconds"),
        "key_id": anchor.key_id,
        "migrations": [
            {"id": h.migration_id, "party_id": h.party_id, "seq": h.seq, "head": h.head} for h in anchor.heads
        ],
        "root": anchor.root,
    }


def _bad(source: str, why: str) -> InputError:
    return InputError(f"{source} is not a usable audit anchor: {why}")


def _heads(data: Mapping[str, Any], source: str) -> list[ChainHead]:
    items = data.get("migrations")
    if not isinstance(items, list):
        raise _bad(source, "it has no list of migrations")
    heads = []
    for i, item in enumerate(items, 1):
        try:
            head = ChainHead(int(item["id"]), str(item["party_id"]), int(item["seq"]), str(item["head"]))
        except (KeyError, TypeError, ValueError):
            raise _bad(source, f"migration entry {i} lacks id, party_id, seq or head") from None
        heads.append(head)
    return heads


def from_json(db: Database, data: object, *, source: str) -> AuditAnchor:
    """An anchor read back (``source`` names the file in errors); ``InputError`` (exit 2) when it
    is not an anchor, was written under another audit key, or was changed since it was written."""
    key = require_key(db)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise _bad(source, f"it is not a JSON object with format {FORMAT!r}")
    if data.get("version") != VERSION:
        raise _bad(source, f"version {data.get('version')!r}; this peppol-migrate reads version {VERSION}")
    try:
        at = datetime.fromisoformat(str(data["written_at"]))
    except (KeyError, ValueError):
        raise _bad(source, "written_at is missing or not an ISO 8601 time") from None
    if at.tzinfo is None:
        raise _bad(source, "written_at has no time zone")
    heads = _heads(data, source)
    if data.get("key_id") != key_id(key):
        raise _bad(source, "it was written under another audit key than PEPPOL_MIGRATE_AUDIT__KEY")
    root = _root(key, at.astimezone(UTC), str(data["key_id"]), heads)
    if not hmac.compare_digest(root, str(data.get("root", ""))):
        raise _bad(source, "its root does not match its contents: the anchor was changed after it was written")
    return AuditAnchor(written_at=at.astimezone(UTC), key_id=str(data["key_id"]), heads=heads, root=root)
