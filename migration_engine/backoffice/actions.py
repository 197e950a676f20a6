"""Operator actions: key set, retry, cancel, pause, resume. Each is one audited compare-and-set.

An action on a migration that a worker is running bumps its version, so the worker's late
result is discarded rather than overwriting the operator's decision.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from migration_engine.engine import changes
from migration_engine.engine.changes import Actor
from migration_engine.errors import InputError, TransitionError
from migration_engine.keys import KeyVault, key_problem, mask
from migration_engine.machine import TERMINAL_STATES, Direction, State, Trigger
from migration_engine.peppol.identifiers import canonical
from migration_engine.settings import Settings
from migration_engine.store import Change, MigrationRecord, Store

ACTIONS = ("retry", "cancel", "pause", "resume")


@dataclass(frozen=True)
class ActionResult:
    party_id: str
    migration_id: int
    ok: bool
    message: str
    state: str


def active_migration(store: Store, party: str, *, action: str | None = None) -> MigrationRecord:
    """The party's open migration; when it has none, an error that says what became of its last one."""
    party_id = canonical(party)
    found = store.find_party(party_id)
    for record in found:
        if record.state not in TERMINAL_STATES:
            return record
    if not found:
        raise InputError(f"party {party_id} has no open migration (it has no migration at all)")
    last = found[0]  # newest first
    when = f" on {last.completed_at:%Y-%m-%d %H:%M} UTC" if last.completed_at else ""
    verb = f"cannot {action}: " if action else ""
    raise TransitionError(
        f"party {party_id}: {verb}its migration ({last.direction}) is already {last.state}{when}; "
        "it has no open migration"
    )


def _apply(store: Store, record: MigrationRecord, build: Callable[[MigrationRecord], Change]) -> MigrationRecord:
    """Apply an operator change; if a worker moved the row meanwhile, re-read and try once more."""
    for _ in range(3):
        applied = store.apply(build(record))
        if applied is not None:
            return applied
        fresh = store.get(record.id)
        if fresh is None:
            break
        record = fresh
    raise TransitionError(f"party {record.party_id} is being moved by a worker right now; try again")


def _undecodable(key: str) -> str | None:
    """Why ``key`` is not text the vault can encrypt, or None.

    Python hands over bytes that are not UTF-8 (a command-line argument, standard input in
    the C locale) as lone surrogates, ``\\udc80``-``\\udcff`` for bytes 0x80-0xff; they cannot
    be encoded again, so without this the key would fail inside the vault, after the checks.
    Says where the first such byte is, never the key.
    """
    for i, ch in enumerate(key):
        if 0xDC80 <= ord(ch) <= 0xDCFF:
            return f"the key is not UTF-8 text (byte 0x{ord(ch) - 0xDC00:02x} at position {i + 1})"
        if 0xD800 <= ord(ch) <= 0xDFFF:
            return f"the key is not text (a lone UTF-16 surrogate at position {i + 1})"
    return None


def key_set(store: Store, vault: KeyVault, settings: Settings, *, party: str, key: str, actor: str) -> MigrationRecord:
    """Supply a (new) inbound key: ``requested``/``key_rejected`` -> ``key_issued``."""
    problem = _undecodable(key) or key_problem(key)
    if problem:
        raise InputError(f"key for {party}: {problem}")
    record = active_migration(store, party, action="set a key")
    if record.direction is not Direction.TO_ECONNECT:
        raise TransitionError(f"party {record.party_id} migrates from eConnect; eConnect issues its key")
    ciphertext = vault.encrypt(key)

    def build(r: MigrationRecord) -> Change:
        return changes.move(
            r,
            Trigger.KEY_RECEIVED,
            by=Actor.operator(actor),
            settings=settings,
            now=store.clock.now(),
            detail={"key": mask(key), "action": "key set"},
            key_ciphertext=ciphertext,
        )

    return _apply(store, record, build)


def operator_action(
    store: Store, settings: Settings, *, record: MigrationRecord, action: str, actor: str
) -> MigrationRecord:
    """retry, cancel, pause or resume one migration; ``TransitionError`` says why not."""
    if action not in ACTIONS:
        raise InputError(f"unknown action {action!r}; use one of {', '.join(ACTIONS)}")
    if record.state in TERMINAL_STATES:
        raise TransitionError(f"party {record.party_id}: cannot {action} a {record.state} migration")

    by = Actor.operator(actor)

    def build(r: MigrationRecord) -> Change:
        if action in ("pause", "resume"):
            want = action == "pause"
            if r.paused == want:
                raise TransitionError(f"party {r.party_id} is already {'paused' if want else 'running'}")
            return changes.set_paused(r, by=by, paused=want, action=action)
        detail: dict[str, Any] = {"action": action}
        if action == "cancel":
            trigger = Trigger.CANCEL
            if r.direction is Direction.FROM_ECONNECT and r.key_ciphertext is not None:
                detail["note"] = "the SML has no cancel operation: the issued key stays valid until it expires"
        elif r.direction is Direction.FROM_ECONNECT and r.state is State.KEY_EXPIRED:
            trigger = Trigger.REISSUE  # an expired outbound key: retry asks eConnect for a fresh one
        elif r.state is State.NEEDS_ATTENTION:
            trigger = Trigger.RETRY  # back to the state it failed in
        else:
            raise TransitionError(
                f"party {r.party_id} is in {r.state}: only needs_attention (or an expired outbound key) can be retried"
            )
        return changes.move(r, trigger, by=by, settings=settings, now=store.clock.now(), detail=detail)

    return _apply(store, record, build)


def act_on_batch(store: Store, settings: Settings, *, batch_name: str, action: str, actor: str) -> list[ActionResult]:
    """Apply an action to every open migration of a batch; refusals are reported, not raised."""
    results = []
    for record in list(store.list_migrations(batch_name=batch_name)):
        if record.state in TERMINAL_STATES:
            continue
        try:
            applied = operator_action(store, settings, record=record, action=action, actor=actor)
            results.append(ActionResult(record.party_id, record.id, True, f"{action} done", applied.state.value))
        except TransitionError as exc:
            results.append(ActionResult(record.party_id, record.id, False, str(exc), record.state.value))
    return results
