"""The SML (Service Metadata Locator) of the simulated Peppol network.

Which SMP owns each participant, which SMP its DNS record shows (it catches up with the
owner after a propagation delay), and at most one migration record per participant, with
PrepareToMigrate and Migrate as ``docs/peppol-network.md`` ("Migration keys") describes them (BDMSL's rules,
plus a key lifetime, which the real SML does not state).

Not thread-safe on its own: ``SandboxModel`` calls it under its lock.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from migration_engine.clock import Clock
from migration_engine.keys import SPECIALS, generate_key, key_problem

FaultKind = Literal["bad_request", "not_found", "unauthorized", "conflict"]

ERR_106_TEXT = (
    "[ERR-106] The migration code must contain a minimum of (8 characters,2 Upper Case letters,"
    f"2 Lower Case letters,2 Special Characters among {SPECIALS} and 2 numbers), "
    "a maximum of 24 characters and No White Spaces."
)


class SmlFault(Exception):
    """A SOAP fault of the SML: ``kind`` is the fault type, ``code`` the BDMSL ``ERR-1xx``."""

    def __init__(self, kind: FaultKind, code: str, message: str) -> None:
        super().__init__(f"[{code}] {message}")
        self.kind = kind
        self.code = code
        self.message = message


@dataclass
class MigrationRecord:
    key: str
    old_smp: str
    created_at: datetime
    migrated: bool = False
    new_smp: str | None = None
    migrated_at: datetime | None = None


@dataclass
class SmlEntry:
    owner: str | None
    dns_smp: str | None
    migration: MigrationRecord | None = None


@dataclass(order=True)
class _DnsChange:
    due: datetime
    seq: int
    party: str = field(compare=False)
    smp: str | None = field(compare=False)


class Sml:
    """Participants by canonical id (``ICD:value``); SMP ids are plain names."""

    def __init__(
        self, clock: Clock, *, key_ttl_s: float, propagation_delay_s: float, repeat_prepare: str
    ) -> None:
        self._clock = clock
        self.key_ttl = timedelta(seconds=key_ttl_s)
        self.propagation_delay = timedelta(seconds=propagation_delay_s)
        self.repeat_prepare = repeat_prepare
        self.entries: dict[str, SmlEntry] = {}
        self._pending: list[_DnsChange] = []
        self.issued: dict[str, None] = {}  # every key a PrepareToMigrate stored, in order
        self._seq = 0

    # -- time --------------------------------------------------------------------------------

    def advance(self, until: datetime) -> None:
        """Apply every DNS change due by ``until``."""
        while self._pending and self._pending[0].due <= until:
            change = heapq.heappop(self._pending)
            entry = self.entries.get(change.party)
            if entry is not None:
                entry.dns_smp = change.smp

    def _point(self, party: str, smp: str | None, *, at_once: bool = False) -> None:
        entry = self.entries[party]
        if at_once or self.propagation_delay <= timedelta(0):
            if at_once and any(c.party == party for c in self._pending):
                self._pending = [c for c in self._pending if c.party != party]
                heapq.heapify(self._pending)
            entry.dns_smp = smp
            return
        self._seq += 1
        heapq.heappush(
            self._pending, _DnsChange(self._clock.now() + self.propagation_delay, self._seq, party, smp)
        )

    def expired(self, record: MigrationRecord) -> bool:
        return self._clock.now() - record.created_at > self.key_ttl

    # -- reads -------------------------------------------------------------------------------

    def owner(self, party: str) -> str | None:
        entry = self.entries.get(party)
        return entry.owner if entry else None

    def dns_smp(self, party: str) -> str | None:
        entry = self.entries.get(party)
        return entry.dns_smp if entry else None

    def record(self, party: str) -> MigrationRecord | None:
        entry = self.entries.get(party)
        return entry.migration if entry else None

    # -- writes ------------------------------------------------------------------------------

    def register(self, party: str, smp: str, *, propagated: bool = False, force: bool = False) -> None:
        """Create the participant under ``smp`` (idempotent for the same SMP).

        ``force`` (test seeding only) moves it whatever its state and forgets its migration.
        """
        entry = self.entries.get(party)
        if entry is not None and entry.owner not in (None, smp) and not force:
            raise SmlFault(
                "conflict", "ERR-112", f"The participant {party} is already registered at another SMP."
            )
        if entry is None:
            entry = self.entries[party] = SmlEntry(owner=None, dns_smp=None)
        if force:
            entry.migration = None
        if entry.owner != smp:
            entry.owner = smp
            self._point(party, smp, at_once=propagated)

    def unregister(self, party: str, smp: str) -> None:
        """Delete the participant; refused while a migration from ``smp`` is planned (ERR-114)."""
        entry = self.entries.get(party)
        if entry is None or entry.owner is None:
            raise SmlFault("not_found", "ERR-110", f"The participant {party} doesn't exist.")
        if entry.owner != smp:
            raise SmlFault(
                "unauthorized", "ERR-101", f"The participant {party} is not registered by SMP {smp}."
            )
        record = entry.migration
        if record is not None and not record.migrated and record.old_smp == smp:
            raise SmlFault(
                "conflict",
                "ERR-114",
                f"A migration is planned for the participants [{party}] of the SMP {smp}. "
                "Please contact your system administrator.",
            )
        entry.owner = None
        entry.migration = None
        self._point(party, None)

    def prepare(self, smp: str, party: str, key: str | None = None) -> str:
        """PrepareToMigrate by the current owner ``smp``; returns the key now stored."""
        entry = self.entries.get(party)
        if entry is None or entry.owner is None:
            raise SmlFault(
                "not_found", "ERR-110", f"The participant {party} doesn't exist for the SMP {smp}."
            )
        if entry.owner != smp:
            raise SmlFault(
                "unauthorized", "ERR-101", f"The participant {party} is not registered by SMP {smp}."
            )
        if key is not None and key_problem(key) is not None:
            raise SmlFault("bad_request", "ERR-106", ERR_106_TEXT)
        record = entry.migration
        if (
            self.repeat_prepare == "same"
            and record is not None
            and not record.migrated
            and record.old_smp == smp
            and not self.expired(record)
        ):
            return record.key
        key = key if key is not None else generate_key()
        # BDMSL updates an existing record in place (overwrites the key); a new one otherwise.
        entry.migration = MigrationRecord(key=key, old_smp=smp, created_at=self._clock.now())
        self.issued[key] = None
        return key

    def migrate(self, new_smp: str, party: str, key: str) -> str:
        """Migrate by the new SMP; returns the old SMP. DNS follows after the delay."""
        if key_problem(key) is not None:
            raise SmlFault("bad_request", "ERR-106", ERR_106_TEXT)
        entry = self.entries.get(party)
        if entry is None or entry.owner is None:
            raise SmlFault("not_found", "ERR-110", f"The participant {party} doesn't exist.")
        record = entry.migration
        if record is None:
            raise SmlFault(
                "not_found",
                "ERR-111",
                "No migration record found. "
                "Please call the prepareToMigrate service prior to the Migrate service.",
            )
        if record.migrated or entry.owner != record.old_smp:
            # BDMSL: the participant no longer exists under the record's old SMP (a used key).
            raise SmlFault(
                "not_found", "ERR-110", f"The participant {party} doesn't exist for the SMP {record.old_smp}."
            )
        if new_smp == record.old_smp:
            raise SmlFault(
                "bad_request", "ERR-112", f"The participant {party} is already registered at SMP {new_smp}."
            )
        if key != record.key:
            raise SmlFault("unauthorized", "ERR-101", "The migration key doesn't match the expected one")
        if self.expired(record):
            raise SmlFault("unauthorized", "ERR-101", "The migration key has expired")
        record.migrated = True
        record.new_smp = new_smp
        record.migrated_at = self._clock.now()
        entry.owner = new_smp
        self._point(party, new_smp)
        return record.old_smp
