"""Operator actions as changes: made at once, or requested while a step is in flight and made
after the step's outcome (docs/state-machines.md, "Operator actions and steps in flight").

``action_change`` is the one place an action (key set, retry, cancel, pause, resume) becomes a
``Change``, with the notes that keep the audit trail true to what happened remotely:

- cancelling an inbound migration whose migration PUT the PSB accepted does not give the party
  back: the note says so and what to do instead;
- cancelling an outbound migration whose key was issued leaves that key valid at the SML until
  it is used or replaced: the note says so (the key stays stored, encrypted).

``follow_up`` turns a pending request into the change the worker applies right after the
step's outcome, from the state that outcome left (or, when that state does not allow the
action, an audit event saying it was not applied and why). Pure bookkeeping: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from migration_engine.engine import changes
from migration_engine.engine.changes import Actor
from migration_engine.errors import PeppolMigrateError, TransitionError
from migration_engine.machine import TERMINAL_STATES, Direction, State, Trigger
from migration_engine.settings import Settings
from migration_engine.store import Change, MigrationRecord, PendingRequest

KEY_SET = "key set"
ACTIONS = ("retry", "cancel", "pause", "resume")

# Inbound states after the PSB accepted the migration PUT: the party is (or is becoming) eConnect's.
ACCEPTED_BY_PSB = frozenset(
    {State.TAKEOVER_SUBMITTED, State.TAKEN_OVER, State.CAPABILITIES_CONFIGURED, State.PERMISSIONS_SET}
)
CANCEL_AFTER_TAKEOVER = (
    "the PSB accepted the migration PUT: the party is eConnect's at the SML (or becomes so once the takeover "
    "completes); cancelling does not undo that. To give the party back, import an outbound (from-econnect) "
    "migration for it naming its provider"
)
CANCEL_AFTER_HANDOVER = (
    "the new provider took the party over at the SML; cancelling does not undo that (eConnect's leftovers "
    "are not cleaned up)"
)
CANCEL_WITH_KEY = (
    "the migration key was issued: it is kept here, encrypted, and stays valid at the SML until it is used "
    "or replaced (the SML has no cancel operation); a new provider holding it can still take the party over"
)
WORKER_STOPPED = (
    "the worker running the step stopped before recording its outcome: what its last call did at the PSB "
    "is not known here; check the party with `lookup`"
)
IN_FLIGHT = "a step is in flight: the request applies when it ends"


def action_change(
    record: MigrationRecord,
    action: str,
    *,
    by: Actor,
    settings: Settings,
    now: datetime,
    detail: Mapping[str, Any] | None = None,
    key_ciphertext: str | None = None,
) -> Change:
    """The change ``action`` makes on ``record`` now; ``TransitionError`` when it may not."""
    shown: dict[str, Any] = {"action": action, **(detail or {})}
    if record.state in TERMINAL_STATES:
        raise TransitionError(f"party {record.party_id}: cannot {action} a {record.state} migration")
    if action in ("pause", "resume"):
        want = action == "pause"
        if record.paused == want:
            raise TransitionError(f"party {record.party_id} is already {'paused' if want else 'running'}")
        return changes.stay(record, by=by, kind=by.event_kind, detail=shown, paused=want)
    if action == KEY_SET:
        if record.direction is not Direction.TO_ECONNECT:
            raise TransitionError(f"party {record.party_id} migrates from eConnect; eConnect issues its key")
        if record.state in ACCEPTED_BY_PSB:
            raise TransitionError(
                f"party {record.party_id} is {record.state}: the PSB accepted the key submitted before, "
                "so a new key is not needed and was not stored"
            )
        return changes.move(
            record, Trigger.KEY_RECEIVED, by=by, settings=settings, now=now, detail=shown, key_ciphertext=key_ciphertext
        )
    if action == "cancel":
        trigger = Trigger.CANCEL
        note = cancel_note(record)
        if note:
            shown["note"] = note
    elif action != "retry":
        raise TransitionError(f"unknown action {action!r}; use one of {', '.join(ACTIONS)}")
    elif record.direction is Direction.FROM_ECONNECT and record.state is State.KEY_EXPIRED:
        trigger = Trigger.REISSUE  # an expired outbound key: retry asks eConnect for a fresh one
    elif record.state is State.NEEDS_ATTENTION:
        trigger = Trigger.RETRY  # back to the state it failed in
    else:
        raise TransitionError(
            f"party {record.party_id} is in {record.state}: only needs_attention (or an expired outbound key) "
            "can be retried"
        )
    return changes.move(record, trigger, by=by, settings=settings, now=now, detail=shown)


def cancel_note(record: MigrationRecord) -> str | None:
    """What a cancel in ``record``'s state does not undo, or None."""
    if record.direction is Direction.TO_ECONNECT:
        return CANCEL_AFTER_TAKEOVER if record.state in ACCEPTED_BY_PSB else None
    if record.state is State.TAKEN_OVER:
        return CANCEL_AFTER_HANDOVER
    return CANCEL_WITH_KEY if record.key_ciphertext is not None else None


def request_check(record: MigrationRecord, action: str, *, settings: Settings, now: datetime) -> None:
    """``TransitionError`` when ``action`` makes no sense for ``record`` in flight: the same checks
    as at once, except that a key set may be requested during the key's PUT (it may be refused)."""
    if action == KEY_SET and record.direction is Direction.TO_ECONNECT and record.state is State.KEY_ISSUED:
        return
    action_change(record, action, by=Actor.operator("check"), settings=settings, now=now)


def follow_up(
    record: MigrationRecord, pending: PendingRequest, *, settings: Settings, now: datetime, stale: bool = False
) -> Change:
    """The change that applies ``pending`` to ``record`` (as the step's outcome left it), clearing
    the request; when the action no longer applies, an ``operator`` event saying so instead.
    ``stale``: the step's worker stopped without recording an outcome. Never raises."""
    by = Actor.operator(pending.actor)
    detail: dict[str, Any] = {"requested_at": pending.at.isoformat(), "applied": "after the step in flight ended"}
    if stale:
        detail["applied"] = "at the next claim"
        detail["note_worker"] = WORKER_STOPPED
    if "key" in pending.detail:
        detail["key"] = pending.detail["key"]  # masked
    ciphertext = pending.detail.get("key_ciphertext")
    try:
        change = action_change(
            record,
            pending.action,
            by=by,
            settings=settings,
            now=now,
            detail=detail,
            key_ciphertext=ciphertext if isinstance(ciphertext, str) else None,
        )
    except PeppolMigrateError as exc:
        detail.pop("applied")
        change = changes.stay(
            record, by=by, kind=by.event_kind, detail={"action": pending.action, **detail, "not_applied": str(exc)}
        )
    return replace(change, clear_pending=True)
