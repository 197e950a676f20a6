"""What the reconciler looks for in one migration: the rules, apart from running and recording.

``check`` takes a migration, what the network says about its party now (a ``PartySnapshot``,
or None when the network is not configured or not asked) and the PSB's configuration of the
party (asked only when the SML points at eConnect), and returns one ``Observation`` per
finding kind it could decide: present (with what was seen and what to do) or absent. A kind
it could not decide (the lookup failed) is left out, so an open finding is not cleared on a
failed look. The meaning of each kind is in docs/operations.md, "Reconciler".
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from migration_engine.errors import PsbError
from migration_engine.machine import Direction, State
from migration_engine.peppol.snapshot import REGISTERED, TECHNICAL_FAILURE, PartySnapshot
from migration_engine.store import MigrationRecord

KEY_UNUSED = "key_unused"
SML_WITHOUT_CONFIG = "sml_without_config"
THIRD_PROVIDER = "third_provider"
NOT_SERVED = "not_served"
FINDING_KINDS = (KEY_UNUSED, SML_WITHOUT_CONFIG, THIRD_PROVIDER, NOT_SERVED)
NETWORK_KINDS = (SML_WITHOUT_CONFIG, THIRD_PROVIDER, NOT_SERVED)

S = State
# Inbound: from the takeover on, the party must be at eConnect's SMP.
_INBOUND_AT_ECONNECT = frozenset({S.TAKEN_OVER, S.CAPABILITIES_CONFIGURED, S.PERMISSIONS_SET, S.COMPLETED})
# Outbound: a key exists that the new provider may use.
_OUTBOUND_KEY_OUT = frozenset({S.KEY_ISSUED, S.KEY_DELIVERED})


@dataclass(frozen=True)
class Observation:
    """One kind decided for one migration: ``present`` or not, and if so what and what to do.
    ``seen`` is what identifies the finding (a change of it is a changed finding)."""

    kind: str
    present: bool
    seen: Mapping[str, Any] = field(default_factory=dict)
    summary: str = ""
    action: str = ""

    @property
    def signature(self) -> str:
        return json.dumps(dict(self.seen), sort_keys=True, separators=(",", ":"), default=str)


def _absent(kind: str) -> Observation:
    return Observation(kind, False)


def _effective_state(record: MigrationRecord) -> State:
    """Where a migration stands for the rules: a needs_attention one counts as the state it failed in."""
    if record.state is S.NEEDS_ATTENTION and record.failed_state is not None:
        return record.failed_state
    return record.state


def _where(snap: PartySnapshot) -> str:
    return snap.provider or snap.smp_host or snap.smp_url or "an unknown SMP"


def _same_provider(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.strip().casefold() == b.strip().casefold()


def key_unused(
    record: MigrationRecord, snap: PartySnapshot | None, *, now: datetime, after: timedelta
) -> Observation:
    """Outbound: a key issued longer than ``after`` ago, still not used (the party has not
    left eConnect's SMP as far as the network says)."""
    state = _effective_state(record)
    issued = record.key_issued_at
    if record.direction is not Direction.FROM_ECONNECT or state not in _OUTBOUND_KEY_OUT or issued is None:
        return _absent(KEY_UNUSED)
    if now - issued < after:
        return _absent(KEY_UNUSED)
    if snap is not None and snap.lookup != TECHNICAL_FAILURE and snap.smp_url is not None and not snap.econnect:
        return _absent(KEY_UNUSED)  # the SML points elsewhere: the key was used, the takeover shows soon
    hours = (now - issued).total_seconds() / 3600
    who = record.new_provider or "the new provider"
    return Observation(
        KEY_UNUSED,
        True,
        seen={"state": state.value, "key_issued_at": issued.isoformat(), "new_provider": record.new_provider},
        summary=f"the migration key issued at {issued.isoformat(timespec='minutes')} ({hours:.0f} h ago, "
        f"{state.value}) has not been used: the SML refuses other changes to the party while it is planned",
        action=f"ask {who} to take the party over with the key now; if it will not, cancel the migration "
        "(the key expires after keys.ttl_h)",
    )


def third_provider(record: MigrationRecord, snap: PartySnapshot) -> Observation:
    """The party is at a provider it should not be at: outbound, a known provider that is not
    the migration's new provider; inbound from the takeover on, any SMP that is not eConnect's."""
    if snap.smp_url is None or snap.econnect:
        return _absent(THIRD_PROVIDER)
    state = _effective_state(record)
    seen = {"smp_url": snap.smp_url, "provider": snap.provider}
    if record.direction is Direction.FROM_ECONNECT:
        if snap.provider is None or _same_provider(snap.provider, record.new_provider):
            return _absent(THIRD_PROVIDER)  # an SMP not in network.known_smps cannot be told apart
        return Observation(
            THIRD_PROVIDER,
            True,
            seen={**seen, "new_provider": record.new_provider},
            summary=f"the party is served by {_where(snap)}, not by the new provider "
            f"{record.new_provider or '(none named)'} ({state.value})",
            action="check with the party which provider it chose; cancel this migration if it moved elsewhere",
        )
    if state not in _INBOUND_AT_ECONNECT:
        return _absent(THIRD_PROVIDER)
    when = "after the inbound migration completed" if state is S.COMPLETED else f"during the migration ({state.value})"
    return Observation(
        THIRD_PROVIDER,
        True,
        seen=seen,
        summary=f"the party left eConnect for {_where(snap)} {when}",
        action="check with the party whether it moved on purpose; if so, remove eConnect's leftovers "
        "(configuration, hooks, users); if not, ask for a migration key and migrate it back",
    )


def not_served(record: MigrationRecord, snap: PartySnapshot) -> Observation:
    """A completed inbound party the SML does not send to eConnect's SMP, or whose registration
    eConnect's SMP does not answer for (a party at another SMP is ``third_provider``)."""
    if record.direction is not Direction.TO_ECONNECT or record.state is not S.COMPLETED:
        return _absent(NOT_SERVED)
    if snap.smp_url is not None and not snap.econnect:
        return _absent(NOT_SERVED)
    if snap.lookup == REGISTERED and snap.econnect:
        return _absent(NOT_SERVED)
    why = (
        "the SML has no registration for it"
        if snap.smp_url is None
        else f"eConnect's SMP answers {snap.lookup.replace('_', ' ')} for it"
    )
    return Observation(
        NOT_SERVED,
        True,
        seen={"lookup": snap.lookup, "smp_url": snap.smp_url},
        summary=f"the completed inbound party is no longer served by eConnect: {why}",
        action="check the party's configuration at the PSB (`peppol-migrate lookup PARTY`); "
        "re-register it at eConnect or confirm it left on purpose",
    )


def sml_without_config(snap: PartySnapshot, config: Callable[[], Mapping[str, Any] | None]) -> Observation:
    """The SML points at eConnect's SMP but the PSB has no configuration for the party."""
    if snap.smp_url is None or not snap.econnect:
        return _absent(SML_WITHOUT_CONFIG)
    if config() is not None:
        return _absent(SML_WITHOUT_CONFIG)
    return Observation(
        SML_WITHOUT_CONFIG,
        True,
        seen={"smp_url": snap.smp_url},
        summary="the SML points at eConnect's SMP but the PSB has no configuration for the party: "
        "senders find it, nothing receives for it",
        action="restore the party's configuration at the PSB (PUT config/party), or remove its SML "
        "registration if it should not be at eConnect",
    )


def check(
    record: MigrationRecord,
    snap: PartySnapshot | None,
    config: Callable[[], Mapping[str, Any] | None],
    *,
    now: datetime,
    key_unused_after: timedelta,
) -> list[Observation]:
    """Every kind decidable for ``record``. ``config()`` asks the PSB (it may raise a ``PsbError``:
    then ``sml_without_config`` is left undecided)."""
    found = [key_unused(record, snap, now=now, after=key_unused_after)]
    if snap is None or snap.lookup == TECHNICAL_FAILURE:
        return found
    found.append(third_provider(record, snap))
    served = not_served(record, snap)
    try:
        no_config = sml_without_config(snap, config)
    except PsbError:  # undecided this time: an open finding stays open
        return [*found, served]
    if no_config.present and served.present:
        served = _absent(NOT_SERVED)  # one finding for one cause: the missing configuration
    return [*found, served, no_config]
