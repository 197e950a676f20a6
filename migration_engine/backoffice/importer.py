"""Importing a batch: validate every row first, then write all or nothing.

The file is read twice, streaming both times: once to validate (keeping only the set of
party ids seen), once to write. Keys are sealed (bound to their new migration's id) as the
store writes them, in the import's one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from migration_engine.backoffice.batch_file import iter_valid_rows, validate_file
from migration_engine.clock import Clock
from migration_engine.engine import due_times
from migration_engine.errors import ImportRejected, InputError
from migration_engine.keys import KeyVault
from migration_engine.machine import State
from migration_engine.profiles import ProfileCatalog
from migration_engine.schedule import ScheduleEdit
from migration_engine.settings import Settings
from migration_engine.store import NewMigration, ScheduleToSet, Store


class ImportContext(Protocol):
    """What an import needs of the wiring (``engine.runtime.Runtime`` is one): the store, the
    settings, the profiles and the key vault, and nothing of the worker or the PSB client."""

    settings: Settings
    clock: Clock

    @property
    def profiles(self) -> ProfileCatalog: ...

    def checked_store(self) -> Store: ...

    def vault(self) -> KeyVault: ...


class ImportProgress(Protocol):
    """Told how far an import is (the CLI shows a bar or log lines; tests and the demo pass none)."""

    @property
    def done(self) -> int: ...

    def phase(self, name: str) -> None: ...

    def advance(self, rows: int) -> None: ...


def import_file(
    rt: ImportContext,
    *,
    path: str | Path,
    batch_name: str | None,
    dry_run: bool,
    actor: str,
    progress: ImportProgress | None = None,
    schedule: ScheduleEdit | None = None,
) -> dict[str, Any]:
    """Validate ``path`` and, unless ``dry_run``, import it as batch ``batch_name``.

    ``schedule`` (optional) edits the batch's schedule (the existing batch's, or none): checked
    before anything is written, set in the import's own transaction (audited on the batch's
    open migrations, the new ones included), so no migration of the batch starts unpaced.

    ``progress`` (optional) is told the rows checked (as their ids are looked up in the
    store, a thousand at a time) and the rows written.
    """
    file = Path(path)
    if not file.is_file():
        raise InputError(f"{file}: no such file")
    store = rt.checked_store()
    settings = rt.settings
    # A configured key-encryption key is checked first, before the file is read: a wrong one
    # is refused (exit 2) with nothing done. Without one, only a file bringing keys is refused.
    checked = rt.vault() if settings.keys.encryption_key and not dry_run else None

    def is_active(party_ids: Iterable[str]) -> set[str]:
        ids = list(party_ids)
        if progress is not None:
            progress.advance(len(ids))
        return store.active_party_ids(ids)

    if progress is not None:
        progress.phase("checking")
    result = validate_file(
        file,
        default_profile=settings.profiles.default,
        is_active=is_active,
        known_profiles=rt.profiles.names(),
    )
    if progress is not None:
        progress.advance(result.rows - progress.done)  # also the rows whose id was not valid
    problems = [p.as_dict() for p in result.problems]
    if problems:
        shown = f"{result.problem_count} problem(s)" + (" (first ones shown)" if result.truncated else "")
        raise ImportRejected(f"{file}: {shown}; nothing was imported", problems=problems)
    name = batch_name or file.stem
    plan: dict[str, Any] = {
        "batch": name,
        "file": str(file),
        "rows": result.rows,
        "by_direction": {d.value: n for d, n in result.by_direction.items()},
        "with_key": result.with_key,
        "dry_run": dry_run,
    }
    new_schedule = None
    if schedule is not None:
        new_schedule = schedule.apply(store.batch_schedule(name))  # bad values: refused here
        plan["schedule"] = None if new_schedule is None else new_schedule.as_dict()
    if dry_run:
        return plan
    if schedule is not None:
        store.require_audit_key()  # the schedule's change is audited: refused before the import
    vault = (checked or rt.vault()) if result.with_key else None
    now = rt.clock.now()
    # Keys are sealed for their migration id, which the store allocates as it writes: each
    # row's key waits here (a chunk's worth at most) until ``seal`` is asked for it.
    waiting: dict[str, str] = {}

    def seal(migration_id: int, party_id: str) -> str | None:
        key = waiting.pop(party_id, None)
        if key is None or vault is None:
            return None
        return vault.encrypt(key, migration_id=migration_id, party_id=party_id)

    def items() -> Iterator[NewMigration]:
        for n, row in enumerate(iter_valid_rows(file, default_profile=settings.profiles.default), 1):
            if progress is not None and n % 500 == 0:
                progress.advance(500)
            has_key = row.migration_key is not None
            if row.migration_key:
                waiting[row.party_id] = row.migration_key
            yield NewMigration(
                party_id=row.party_id,
                direction=row.direction,
                state=State.REQUESTED,
                profile=row.profile,
                name=row.name,
                new_provider=row.new_provider,
                current_provider=row.current_provider,
                next_run_at=due_times.next_run_at(
                    row.direction, State.REQUESTED, has_key=has_key, settings=settings, now=now
                ),
            )

    if progress is not None:
        progress.phase("writing")
    # The batch row is created inside the import's one transaction, so an import that is
    # refused midway (an open migration found, a database error) leaves no empty batch behind;
    # its schedule is set in that transaction too, so no migration of it starts unpaced.
    to_set = ScheduleToSet(new_schedule, actor) if schedule is not None else None
    plan["imported"] = store.add_migrations(
        batch_name=name, items=items(), actor=actor, batch_source=str(file), seal=seal, schedule=to_set
    )
    if progress is not None:
        progress.advance(plan["imported"] - progress.done)
    if to_set is not None and to_set.change is not None:
        plan["schedule_audited"] = to_set.change.audited
    return plan
