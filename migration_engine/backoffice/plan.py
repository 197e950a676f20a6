"""The preflight plan: for each party of a batch (or of a batch file before import), what the
Peppol network says about it now and what to do before it moves.

``classify`` turns one party's row and its ``PartySnapshot`` into a ``PartyPlan``: every
finding that applies (``plan_classes``) and the worst of them as its class. ``take`` looks the
parties up (through a ``snapshot`` function, bounded in concurrency; the rate limits are the
lookups' own) and classifies them, keeping the input order. ``batch_rows`` and ``file_rows``
give the rows of a stored batch and of a file. The writers are in ``plan_formats``.

No row carries a migration key: a file's key is checked against the SML's rule as it is read,
and only the verdict (``key_problem``, which never echoes the key) goes into the row.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from itertools import islice
from pathlib import Path
from typing import Any

from migration_engine import keys
from migration_engine.backoffice import plan_classes
from migration_engine.backoffice.batch_file import iter_valid_rows
from migration_engine.errors import NetworkLookupError
from migration_engine.machine import Direction, State
from migration_engine.peppol import identifiers
from migration_engine.peppol import snapshot as snap
from migration_engine.peppol.snapshot import PartySnapshot
from migration_engine.peppol.verification import smp_matches
from migration_engine.store import MigrationRecord, Store

SCHEME_WARNING_DAYS = 90  # a scheme removed within this many days from today is a warning
SnapshotFn = Callable[[str], PartySnapshot]


@dataclass(frozen=True)
class Finding:
    """One class that applies to a party, and why (never a key)."""

    klass: str
    why: str

    def as_dict(self) -> dict[str, str]:
        return {"class": self.klass, "why": self.why}


@dataclass(frozen=True)
class PlanRow:
    """One party to plan: from a batch file's row or a stored migration."""

    party_id: str
    direction: Direction
    line: int | None = None  # the file's line, when planned from a file
    name: str | None = None
    current_provider: str | None = None  # to-econnect: the provider the file names
    new_provider: str | None = None  # from-econnect: where the party goes
    key_problem: str | None = None  # why the file's key breaks the SML rule (never the key)


@dataclass(frozen=True)
class PartyPlan:
    row: PlanRow
    findings: tuple[Finding, ...]
    snapshot: PartySnapshot | None
    notes: tuple[str, ...] = ()

    @property
    def klass(self) -> str:
        return plan_classes.worst([f.klass for f in self.findings])

    @property
    def blocking(self) -> bool:
        return any(f.klass in plan_classes.BLOCKING for f in self.findings)

    @property
    def action(self) -> str:
        return plan_classes.CLASSES[self.klass].action

    def as_dict(self) -> dict[str, Any]:
        s = self.snapshot
        card = s.business_card.as_detail() if s is not None and s.business_card is not None else None
        return {
            "party_id": self.row.party_id,
            "direction": self.row.direction.value,
            "line": self.row.line,
            "name": self.row.name,
            "class": self.klass,
            "blocking": self.blocking,
            "action": self.action,
            "findings": [f.as_dict() for f in self.findings],
            "notes": list(self.notes),
            "current_provider": self.row.current_provider,
            "new_provider": self.row.new_provider,
            "lookup": s.lookup if s is not None else None,
            "smp_url": s.smp_url if s is not None else None,
            "smp_host": s.smp_host if s is not None else None,
            "provider": s.provider if s is not None else None,
            "document_types": s.document_types if s is not None else [],
            "business_card": card,
            "taken_at": s.taken_at.isoformat(timespec="seconds") if s is not None else None,
        }


# ---- classification -------------------------------------------------------------------


def scheme_findings(party_id: str, *, today: date, warn_days: int = SCHEME_WARNING_DAYS) -> list[Finding]:
    """The identifier's scheme: removed (blocks), deprecated or removed within ``warn_days``
    (warns), a value failing its scheme's own rule (warns)."""
    pid = identifiers.parse(party_id, strict=False)
    scheme = pid.scheme
    found: list[Finding] = []
    instead = f"; its successor is {s}" if (s := identifiers.successor(pid.icd)) else ""
    label = f"ICD {pid.icd} ({scheme.scheme_id})"
    if scheme.state == "unregistrable":
        found.append(Finding("scheme_removed", f"{label} cannot be registered in the SML{instead}"))
    elif scheme.state == "removed":
        removed = date.fromisoformat(scheme.removed_on) if scheme.removed_on else None
        if removed is None or removed <= today:
            when = f" on {removed.isoformat()}" if removed else ""
            found.append(Finding("scheme_removed", f"{label} was removed from the code list{when}{instead}"))
        elif (removed - today).days <= warn_days:
            days = (removed - today).days
            why = f"{label} will be removed on {removed.isoformat()}, in {days} days{instead}"
            found.append(Finding("scheme_deprecated", why))
    elif scheme.state == "deprecated":
        found.append(
            Finding("scheme_deprecated", f"{label} is deprecated in code list {identifiers.CODE_LIST_VERSION}")
        )
    if rule := identifiers.value_problem(pid):
        found.append(Finding("id_suspect", rule))
    return found


def _where(s: PartySnapshot) -> str:
    host = s.smp_host or s.smp_url or "an SMP"
    return f"{host} ({s.provider})" if s.provider else f"{host} (a provider not in network.known_smps)"


def _smp_trouble(s: PartySnapshot, whose: str) -> Finding | None:
    detail = f": {'; '.join(s.problems)}" if s.problems else ""
    if s.lookup == snap.SMP_MISSING:
        why = f"the SML points at {whose} SMP {s.smp_url}, which answers 404 for the party"
        return Finding("smp_inconsistent", why)
    if s.lookup == snap.SMP_GARBAGE:
        why = f"{whose} SMP {s.smp_url} answers something that is not a ServiceGroup{detail}"
        return Finding("smp_inconsistent", why)
    if s.lookup == snap.TECHNICAL_FAILURE:
        return Finding("smp_unreachable", f"the lookup failed{detail}")
    return None


def network_findings(
    row: PlanRow, s: PartySnapshot, *, econnect_smp: str
) -> tuple[list[Finding], list[str]]:
    """What the snapshot means for the row's direction: findings, and notes that are no class."""
    found: list[Finding] = []
    notes: list[str] = []
    econnect = s.econnect or (s.smp_url is not None and smp_matches(s.smp_url, econnect_smp))
    if s.lookup == snap.TECHNICAL_FAILURE and s.smp_url is None:
        detail = f": {'; '.join(s.problems)}" if s.problems else ""
        return [Finding("smp_unreachable", f"the SML lookup failed{detail}")], notes
    if row.direction is Direction.TO_ECONNECT:
        if s.lookup == snap.NOT_REGISTERED:
            found.append(Finding("not_registered", "the SML has no record of the party"))
        elif econnect:
            found.append(Finding("already_econnect", f"the SML points at eConnect's SMP {s.smp_url}"))
        elif row.current_provider and s.provider and s.provider.casefold() != row.current_provider.casefold():
            found.append(
                Finding("other_provider", f"the SML points at {_where(s)}; the file names {row.current_provider}")
            )
        elif row.current_provider and not s.provider:
            notes.append(f"current_provider {row.current_provider} not checked: {_where(s)}")
        if (trouble := _smp_trouble(s, "eConnect's" if econnect else "the party's")) is not None:
            found.append(trouble)
    else:
        if s.lookup == snap.NOT_REGISTERED:
            found.append(Finding("not_econnect", "the SML has no record of the party"))
        elif not econnect:
            found.append(Finding("not_econnect", f"the SML points at {_where(s)}, not at eConnect's SMP"))
        elif (trouble := _smp_trouble(s, "eConnect's")) is not None:
            found.append(trouble)
    if s.lookup == snap.REGISTERED and not s.services:
        notes.append("the SMP publishes no document type for the party")
    return found, notes


def classify(
    row: PlanRow,
    s: PartySnapshot | None,
    *,
    econnect_smp: str,
    today: date,
    warn_days: int = SCHEME_WARNING_DAYS,
) -> PartyPlan:
    """Every finding of one party, worst first; ``s`` None when no lookup was made."""
    found = scheme_findings(row.party_id, today=today, warn_days=warn_days)
    notes: list[str] = []
    if s is not None:
        more, notes = network_findings(row, s, econnect_smp=econnect_smp)
        found += more
    if row.key_problem:
        found.append(Finding("key_suspect", row.key_problem))
    found.sort(key=lambda f: plan_classes.ORDER[f.klass])
    return PartyPlan(row, tuple(found), s, tuple(notes))


# ---- a whole plan ---------------------------------------------------------------------


@dataclass
class Plan:
    """The plan of a batch or a file: its parties in input order, the limits it was taken under."""

    source: dict[str, Any]  # {"batch": name} or {"file": name}
    taken_at: datetime
    parties: list[PartyPlan]
    limits: Mapping[str, Any] = field(default_factory=dict)
    warn_days: int = SCHEME_WARNING_DAYS
    left_out: int = 0  # migrations of the batch already under way or finished (not planned)

    def summary(self) -> dict[str, Any]:
        by_class = Counter(p.klass for p in self.parties)
        blocking = sum(p.blocking for p in self.parties)
        return {
            "total": len(self.parties),
            "blocking": blocking,
            "warnings": sum(1 for p in self.parties if not p.blocking and p.klass in plan_classes.WARNINGS),
            "ready": by_class.get(plan_classes.READY, 0),
            "by_class": {c: by_class[c] for c in plan_classes.CLASSES if by_class.get(c)},
            "by_direction": {d.value: sum(p.row.direction is d for p in self.parties) for d in Direction},
            "left_out": self.left_out,
        }

    @property
    def blocks(self) -> bool:
        return any(p.blocking for p in self.parties)

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.source,
            "taken_at": self.taken_at.isoformat(timespec="seconds"),
            "limits": dict(self.limits),
            "scheme_warning_days": self.warn_days,
            "summary": self.summary(),
            "classes": {
                c.name: {"blocking": c.blocking, "action": c.action} for c in plan_classes.CLASSES.values()
            },
            "parties": [p.as_dict() for p in self.parties],
        }


def _failed(party_id: str, exc: NetworkLookupError, taken_at: datetime) -> PartySnapshot:
    return PartySnapshot(party_id, taken_at, snap.TECHNICAL_FAILURE, problems=(str(exc),))


def take(
    rows: Iterable[PlanRow],
    snapshot: SnapshotFn,
    *,
    econnect_smp: str,
    now: Callable[[], datetime],
    concurrency: int = 8,
    warn_days: int = SCHEME_WARNING_DAYS,
    known: Mapping[str, PartySnapshot] | None = None,
    on_done: Callable[[int], None] | None = None,
) -> list[PartyPlan]:
    """Look up and classify every row, ``concurrency`` lookups at a time, in input order.

    ``known`` snapshots (stored ones) are used as they are; ``on_done(n)`` is told each time
    ``n`` more parties are planned. A lookup that raises ``NetworkLookupError`` counts as a
    technical failure of that party, not of the plan.
    """
    today = now().date()
    lock = threading.Lock()

    def one(row: PlanRow) -> PartyPlan:
        s = (known or {}).get(row.party_id)
        if s is None:
            try:
                s = snapshot(row.party_id)
            except NetworkLookupError as exc:
                s = _failed(row.party_id, exc, now())
        planned = classify(row, s, econnect_smp=econnect_smp, today=today, warn_days=warn_days)
        if on_done is not None:
            with lock:
                on_done(1)
        return planned

    out: list[PartyPlan] = []
    source = iter(rows)
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="plan") as pool:
        while chunk := list(islice(source, 1000)):  # bounded: a chunk's futures at a time
            out.extend(pool.map(one, chunk))
    return out


# ---- where the rows come from ---------------------------------------------------------


def file_rows(path: Path, *, default_profile: str | None) -> Iterator[PlanRow]:
    """The rows of a batch file that ``validate_file(strict=False)`` passed."""
    for row in iter_valid_rows(path, default_profile=default_profile, strict=False):
        problem = keys.key_problem(row.migration_key) if row.migration_key else None
        yield PlanRow(
            party_id=row.party_id,
            direction=row.direction,
            line=row.line,
            name=row.name,
            current_provider=row.current_provider,
            new_provider=row.new_provider,
            key_problem=problem,
        )


def record_row(record: MigrationRecord) -> PlanRow:
    return PlanRow(
        record.party_id,
        record.direction,
        name=record.name,
        current_provider=record.current_provider,
        new_provider=record.new_provider,
    )


def batch_records(store: Store, batch_name: str) -> tuple[list[MigrationRecord], int]:
    """The batch's migrations that have not started (``requested``), and how many others it has."""
    planned: list[MigrationRecord] = []
    others = 0
    for record in store.list_migrations(batch_name=batch_name):
        if record.state is State.REQUESTED:
            planned.append(record)
        else:
            others += 1
    return planned, others


def stored_snapshots(store: Store, records: Iterable[MigrationRecord]) -> dict[str, PartySnapshot]:
    """The latest ``snapshot`` audit event of each migration that has one, by party."""
    found: dict[str, PartySnapshot] = {}
    for record in records:
        latest = None
        for event in store.events(record.id):
            if event.kind == "snapshot" and event.detail.get("party_id"):
                latest = event
        if latest is not None:
            found[record.party_id] = PartySnapshot.from_detail(latest.detail)
    return found
