"""What ``GET /sandbox/parties`` shows of a party: both sides of the world at once."""

from __future__ import annotations

from typing import Any

from migration_engine.sandbox.common import iso
from migration_engine.sandbox.econnect import EConnectData
from migration_engine.sandbox.sml import Sml


def describe(pid: str, sml: Sml, econnect: EConnectData) -> dict[str, Any] | None:
    """Owner, DNS, eConnect's config, hooks, permissions and the migration record (with its
    key: this is for tests only); None when the party is unknown everywhere."""
    entry = sml.entries.get(pid)
    cfg = econnect.configs.get(pid)
    hooks = econnect.list_hooks(pid)
    permissions = econnect.permissions_of(pid)
    if entry is None and cfg is None and not hooks and not permissions:
        return None
    record = entry.migration if entry else None
    return {
        "partyId": pid,
        "owner": entry.owner if entry else None,
        "dnsSmp": entry.dns_smp if entry else None,
        "inMigration": bool(cfg and cfg.in_migration),
        "capabilities": econnect.config_json(pid)["capabilities"] if cfg else None,
        "businessCard": dict(cfg.business_card) if cfg else None,
        "hooks": hooks,
        "permissions": permissions,
        "migration": None
        if record is None
        else {
            "key": record.key,
            "oldSmp": record.old_smp,
            "newSmp": record.new_smp,
            "createdAt": iso(record.created_at),
            "expiresAt": iso(record.created_at + sml.key_ttl),
            "expired": sml.expired(record),
            "migrated": record.migrated,
            "migratedAt": iso(record.migrated_at) if record.migrated_at else None,
        },
    }


def known_parties(sml: Sml, econnect: EConnectData) -> list[str]:
    known = set(sml.entries) | set(econnect.configs) | set(econnect.hooks)
    known |= {p for parties in econnect.users.values() for p in parties}
    return sorted(known)
