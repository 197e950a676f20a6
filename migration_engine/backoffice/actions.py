"""Operator actions: key set, retry, cancel, pause, resume. Each is one audited compare-and-set,
made at once, or, on a migration whose step is in flight, requested and made after the step's
outcome.

A migration is in flight while a worker's lease on it is live. An action then does not bump the
row's version (that would throw away the step's result, and with it the truth about what the
step did at the PSB): it is stored as the row's pending request and audited as requested; the
worker applies it right after recording the step's outcome, in the same transaction
(``engine/operator_changes.py``). ``ActionResult.requested`` and the CLI say so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from migration_engine.engine import operator_changes
from migration_engine.engine.changes import Actor
from migration_engine.engine.operator_changes import ACTIONS, IN_FLIGHT, KEY_SET, action_change, follow_up
from migration_engine.errors import InputError, TransitionError
from migration_engine.keys import KeyVault, key_problem, mask
from migration_engine.machine import TERMINAL_STATES, Direction
from migration_engine.peppol.identifiers import canonical
from migration_engine.settings import Settings
from migration_engine.store import Change, EventIn, MigrationRecord, PendingRequest, Store

__all__ = [
    "ACTIONS",
    "REQUESTED",
    "ActionResult",
    "act_on_batch",
    "active_migration",
    "key_set",
    "operator_action",
    "requested",
]

REQUESTED = "requested; applies when the step in flight ends"


@dataclass(frozen=True)
class ActionResult:
    party_id: str
    migration_id: int
    ok: bool
    message: str
    state: str


def requested(record: MigrationRecord, action: str) -> bool:
    """Whether ``record`` (an action's result) holds ``action`` as a request, not yet made."""
    return record.pending is not None and record.pending.action == action


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


def in_flight(store: Store, record: MigrationRecord) -> bool:
    """A worker's lease on the row is live: a step is running (or its outcome being recorded)."""
    return record.lease_owner is not None and record.lease_until is not None and record.lease_until > store.clock.now()


def _apply(
    store: Store,
    settings: Settings,
    record: MigrationRecord,
    action: str,
    build: Callable[[MigrationRecord], Change],
    *,
    actor: str,
    request_detail: dict[str, Any] | None = None,
    shown: dict[str, Any] | None = None,
) -> MigrationRecord:
    """Make an operator change at once, or request it while a step is in flight; re-read and try
    again when a worker claimed or moved the row meanwhile."""
    for _ in range(5):
        if in_flight(store, record):
            if record.pending is not None:
                raise TransitionError(
                    f"party {record.party_id}: a {record.pending.action} is already requested "
                    f"(by {record.pending.actor}); it applies when the step in flight ends"
                )
            operator_changes.request_check(record, action, settings=settings, now=store.clock.now())
            request = PendingRequest(action=action, actor=actor, at=store.clock.now(), detail=request_detail or {})
            event = EventIn(
                kind="operator",
                actor=actor,
                from_state=record.state,
                to_state=record.state,
                detail={"action": action, **(shown or {}), "requested": True, "note": IN_FLIGHT},
            )
            done = store.request_action(migration_id=record.id, version=record.version, request=request, event=event)
        elif record.pending is not None:
            # The worker that held the request stopped: apply it first (as the next claim would).
            change = follow_up(record, record.pending, settings=settings, now=store.clock.now(), stale=True)
            store.apply(change)
            done = None
        else:
            done = store.apply(build(record))
        if done is not None:
            return done
        fresh = store.get(record.id)
        if fresh is None:
            break
        record = fresh
        if record.state in TERMINAL_STATES:
            raise TransitionError(f"party {record.party_id}: cannot {action} a {record.state} migration")
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
    """Supply a (new) inbound key: ``requested``/``key_rejected`` -> ``key_issued``; during the
    key's PUT, requested (applied if the PSB refuses the key in flight)."""
    problem = _undecodable(key) or key_problem(key)
    if problem:
        raise InputError(f"key for {party}: {problem}")
    record = active_migration(store, party, action="set a key")
    if record.direction is not Direction.TO_ECONNECT:
        raise TransitionError(f"party {record.party_id} migrates from eConnect; eConnect issues its key")
    ciphertext = vault.encrypt(key, migration_id=record.id, party_id=record.party_id)
    masked = mask(key)

    def build(r: MigrationRecord) -> Change:
        by = Actor.operator(actor)
        detail = {"key": masked}
        return action_change(
            r, KEY_SET, by=by, settings=settings, now=store.clock.now(), detail=detail, key_ciphertext=ciphertext
        )

    return _apply(
        store,
        settings,
        record,
        KEY_SET,
        build,
        actor=actor,
        request_detail={"key": masked, "key_ciphertext": ciphertext},
        shown={"key": masked},
    )


def operator_action(
    store: Store, settings: Settings, *, record: MigrationRecord, action: str, actor: str
) -> MigrationRecord:
    """retry, cancel, pause or resume one migration; ``TransitionError`` says why not. On a
    migration in flight the result holds the action as its pending request (``requested``)."""
    if action not in ACTIONS:
        raise InputError(f"unknown action {action!r}; use one of {', '.join(ACTIONS)}")
    if record.state in TERMINAL_STATES:
        raise TransitionError(f"party {record.party_id}: cannot {action} a {record.state} migration")

    def build(r: MigrationRecord) -> Change:
        return action_change(r, action, by=Actor.operator(actor), settings=settings, now=store.clock.now())

    return _apply(store, settings, record, action, build, actor=actor)


def act_on_batch(store: Store, settings: Settings, *, batch_name: str, action: str, actor: str) -> list[ActionResult]:
    """Apply an action to every open migration of a batch; refusals are reported, not raised."""
    results = []
    for record in list(store.list_migrations(batch_name=batch_name)):
        if record.state in TERMINAL_STATES:
            continue
        try:
            applied = operator_action(store, settings, record=record, action=action, actor=actor)
            message = f"{action} {REQUESTED}" if requested(applied, action) else f"{action} done"
            results.append(ActionResult(record.party_id, record.id, True, message, applied.state.value))
        except TransitionError as exc:
            results.append(ActionResult(record.party_id, record.id, False, str(exc), record.state.value))
    return results
