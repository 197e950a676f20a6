"""One function per state of both tables: call the PSB, return an outcome.

A step never writes the database and never sleeps. It may run again after a crash between
its remote calls and the store's commit, so each docstring says what a repeat does. A step
raises ``PsbTransientError`` (or ``NetworkLookupError``) for trouble worth retrying; the
worker's retry policy decides.

With ``verify.peppol_network`` on, the takeover and verification steps also ask the Peppol
network (``peppol/verification.py``: SML DNS and SMP) and wait, polling, until it agrees with the PSB;
what they saw goes into the outcome's detail under ``network``.

Receive parity (``engine/parity.py``): the worker hands the steps after a takeover the party's
snapshot (``ctx.snapshot``, what its SMP published before the move, ``engine/baseline.py``).
Inbound, the capabilities step turns on what the party received, the grant step carries its
business card, and the verification step holds a party eConnect's SMP does not serve for
every type it received (``parity.inbound``); outbound, the cleanup step checks eConnect's SMP
dropped the party and the new provider's SMP publishes what eConnect did (``parity.outbound``).
What parity decided goes into the outcome's detail under ``parity``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from migration_engine.engine import parity
from migration_engine.engine.handoff import Handoff
from migration_engine.engine.outcomes import Advance, Fail, Outcome, Wait
from migration_engine.errors import ConfigError, PsbNotFound, PsbPermanentError, is_systemic
from migration_engine.keys import KeyVault, mask
from migration_engine.machine import Direction, State, Trigger
from migration_engine.peppol.snapshot import PartySnapshot
from migration_engine.peppol.verification import NetworkCheck, NetworkVerifier, required_document_types
from migration_engine.profiles import CapabilityMap, Profile, ProfileCatalog
from migration_engine.psb.client import PsbClient
from migration_engine.settings import Settings
from migration_engine.store import MigrationRecord

NEW_KEY_HINT = "ask the current provider for a new key, then run `peppol-migrate key set {party} KEY`"


@dataclass(frozen=True)
class StepContext:
    psb: PsbClient
    settings: Settings
    profiles: ProfileCatalog
    vault: KeyVault | None
    handoff: Handoff | None  # the worker passes a recording view, so a POST is audited like a PSB call
    now: datetime
    network: NetworkVerifier | None = None  # set when verify.peppol_network is on
    # Called right before a call that must not be made twice (the migration PUT, prepareToMigrate):
    # the worker renews its lease there, or raises LeaseLost when another worker took the row.
    fence: Callable[[], None] = lambda: None
    # Receive parity: the party's stored snapshot (steps after a takeover; None when there is
    # none or verify.peppol_network is off) and the document type -> capability map.
    snapshot: PartySnapshot | None = None
    capability_map: CapabilityMap | None = None


Step = Callable[[StepContext, MigrationRecord], Outcome]


def _key(ctx: StepContext, m: MigrationRecord) -> str:
    if m.key_ciphertext is None:
        raise PsbPermanentError("no migration key is stored for this migration", party_id=m.party_id)
    if ctx.vault is None:
        raise PsbPermanentError("keys.encryption_key is not set, so the stored key cannot be read", party_id=m.party_id)
    return ctx.vault.decrypt(m.key_ciphertext, migration_id=m.id, party_id=m.party_id)


def _profile(ctx: StepContext, m: MigrationRecord) -> Profile:
    return ctx.profiles.get(m.profile or ctx.settings.profiles.default)


def _capability_plan(ctx: StepContext, profile: Profile) -> parity.CapabilityPlan:
    """The profile's capabilities plus those of what the party received (its snapshot)."""
    cmap = ctx.capability_map or CapabilityMap.load(ctx.settings.parity.capability_map)
    return parity.plan_capabilities(profile.capabilities, ctx.snapshot, cmap)


def _our_ap(ctx: StepContext, options: list[dict[str, Any]], party_id: str) -> tuple[bool, list[str]]:
    """Whether eConnect's access point serves the party, and every AP url seen for it."""
    urls = sorted({str(o.get("url", "")) for o in options if str(o.get("partyId", party_id)).lower() == party_id})
    return ctx.settings.psb.access_point_url in urls, urls


def next_poll(ctx: StepContext, entered_at: datetime | None) -> datetime:
    """When to look again: waits grow with the time already waited, from poll_s to poll_max_s."""
    t = ctx.settings.takeover
    waited = (ctx.now - entered_at).total_seconds() if entered_at else 0.0
    return ctx.now + timedelta(seconds=max(t.poll_s, min(waited * 0.5, t.poll_max_s)))


def _poll_window_start(ctx: StepContext, m: MigrationRecord) -> datetime | None:
    if m.deadline_at is None:
        return None
    return m.deadline_at - timedelta(hours=ctx.settings.takeover.deadline_h)


def _network(ctx: StepContext) -> NetworkVerifier | None:
    """The verifier when verify.peppol_network is on, else None (the PSB's word is enough)."""
    if not ctx.settings.verify.peppol_network:
        return None
    if ctx.network is None:
        raise ConfigError("verify.peppol_network is on but the worker has no network verifier")
    return ctx.network


def _network_wait(ctx: StepContext, m: MigrationRecord, check: NetworkCheck, detail: dict[str, Any]) -> Outcome:
    """The PSB agrees, the network does not yet: poll again, or fail at the deadline."""
    if m.deadline_at is not None and ctx.now >= m.deadline_at:
        return Fail(Trigger.FAIL, reason=f"by the deadline, {check.reason}", code="NETWORK_VERIFY", detail=detail)
    return Wait(until=next_poll(ctx, _poll_window_start(ctx, m)), detail={**detail, "waiting_for": check.reason})


# ---- inbound (to eConnect) -------------------------------------------------------------


def inbound_requested(ctx: StepContext, m: MigrationRecord) -> Outcome:
    """Scheduled only when the import brought a key: record its arrival. No remote call, so a
    repeat does nothing twice."""
    if m.key_ciphertext is None:
        return Wait(until=None, detail={"waiting_for": "the current provider's migration key"})
    return Advance(Trigger.KEY_RECEIVED, detail={"source": "import"})


def inbound_submit_key(ctx: StepContext, m: MigrationRecord) -> Outcome:
    """PUT config/party/{id} with the key; the PSB takes over the SMP registration.

    Repeat: after a failed try whose outcome is unknown (``attempts`` > 0: a timeout or a
    dropped connection may come after the PSB acted), the remote state is checked first: a
    config readable at eConnect means the party is eConnect's already, and no PUT is sent.
    After a crash (which leaves ``attempts`` alone) the PUT is sent again; if the first one
    went through, the SML has no open migration any more and the PSB may refuse the key, so
    a refusal is checked against the same remote state before it counts as a rejected key.
    """
    key = _key(ctx, m)
    if m.attempts > 0 and ctx.psb.get_party_config(m.party_id) is not None:
        return Advance(Trigger.TAKEOVER_REQUESTED, detail={"note": "already eConnect's (an earlier try went through)"})
    ctx.fence()
    try:
        ctx.psb.submit_migration_key(m.party_id, key)
    except PsbPermanentError as exc:
        if is_systemic(exc):
            raise  # the credentials, not this party's key
        # Any other refusal: first make sure an earlier submission did not already win.
        if ctx.psb.get_party_config(m.party_id) is not None:
            return Advance(Trigger.TAKEOVER_REQUESTED, detail={"note": "already eConnect's (earlier submission)"})
        return Fail(
            Trigger.KEY_REFUSED,
            reason=f"{exc.message} — {NEW_KEY_HINT.format(party=m.party_id)}",
            code=exc.code or f"HTTP{exc.status}",
            detail={"status": exc.status, "psb_message": exc.message, "key": mask(key)},
        )
    return Advance(Trigger.TAKEOVER_REQUESTED, detail={"key": mask(key)})


def inbound_await_takeover(ctx: StepContext, m: MigrationRecord) -> Outcome:
    """Poll deliveryOption until eConnect's access point serves the party (and, with
    verify.peppol_network, until the SML points at eConnect's SMP).

    Read-only, so a repeat is harmless. When the party offers no document type yet
    (no capability on), a readable config with no other access point counts too.
    """
    options = ctx.psb.delivery_options([m.party_id])
    ours, urls = _our_ap(ctx, options, m.party_id)
    if ours or (not urls and ctx.psb.get_party_config(m.party_id) is not None):
        detail: dict[str, Any] = {"access_points": urls}
        network = _network(ctx)
        if network is not None:
            check = network.inbound_takeover(m.party_id)
            detail["network"] = check.observation
            if not check.ok:
                return _network_wait(ctx, m, check, detail)
        return Advance(Trigger.TAKEOVER_CONFIRMED, detail=detail)
    if m.deadline_at is not None and ctx.now >= m.deadline_at:
        return Fail(
            Trigger.FAIL,
            reason=f"eConnect did not serve the party within takeover.deadline_h; access points seen: {urls}",
            code="TAKEOVER_DEADLINE",
        )
    return Wait(until=next_poll(ctx, _poll_window_start(ctx, m)), detail={"access_points": urls})


def inbound_configure(ctx: StepContext, m: MigrationRecord) -> Outcome:
    """Apply the profile's capabilities, plus those that publish what the party received at its
    old provider (its snapshot, through the capability map), with a PUT config; create the
    profile's missing hooks. The received types no capability covers are listed in the detail
    (``parity.uncovered``).

    Repeat: the config PUT is an upsert with the same body; hooks are matched by name, so none
    is doubled.
    """
    profile = _profile(ctx, m)
    plan = _capability_plan(ctx, profile)
    if plan.capabilities:
        body = {name: {"state": state} for name, state in plan.capabilities.items()}
        ctx.psb.put_party_config(m.party_id, {"capabilities": body})
    created = []
    if profile.hooks:
        existing = {str(h.get("name", "")) for h in ctx.psb.get_hooks(m.party_id)}
        for hook in profile.hooks:
            if hook.name in existing:
                continue
            ctx.psb.put_hook(
                m.party_id, {"name": hook.name, "action": hook.action, "topics": list(hook.topics), "isActive": True}
            )
            created.append(hook.name)
    detail: dict[str, Any] = {"profile": profile.name, "capabilities": plan.capabilities, "hooks_created": created}
    if ctx.snapshot is not None:
        detail["parity"] = plan.detail()
    return Advance(Trigger.CAPABILITIES_APPLIED, detail=detail)


def inbound_grant(ctx: StepContext, m: MigrationRecord) -> Outcome:
    """Grant the profile's users their party permissions; enroll the business card: the batch
    row's name and the profile's fields, every other field carried from the party's snapshot
    (``parity.plan_business_card``; the detail says what was carried and what overridden).

    Repeat: both are upserts (PUT) with the same body, so a repeat changes nothing.
    """
    profile = _profile(ctx, m)
    for user in profile.users:
        ctx.psb.put_user_party(
            user.name, {"id": m.party_id, "name": m.name or m.party_id, "permissions": dict(user.permissions)}
        )
    card = parity.plan_business_card(
        party_id=m.party_id, row_name=m.name, profile_card=profile.business_card, snapshot=ctx.snapshot
    )
    if card is not None:
        body: Mapping[str, Any] = {"services": {"peppol": {"businessCard": card.body}}}
        ctx.psb.enroll(m.party_id, body)
    detail: dict[str, Any] = {"users": [u.name for u in profile.users], "business_card": card is not None}
    if card is not None and ctx.snapshot is not None:
        detail["parity"] = {"business_card": card.detail()}
    return Advance(Trigger.PERMISSIONS_GRANTED, detail=detail)


def inbound_verify(ctx: StepContext, m: MigrationRecord) -> Outcome:
    """Final check: a sender's lookup (deliveryOption) reaches eConnect's access point; with
    verify.peppol_network, eConnect's SMP (found through the SML) also lists the document
    types of the capabilities that are on (waited for, like the takeover), and then receive
    parity: every type the party received before (its snapshot) is published with an endpoint,
    or ``parity.inbound`` decides: ``require`` holds the party (needs_attention, code ``PARITY``,
    the exact missing list in the error), ``warn`` completes with a ``warning``, ``off`` ignores it.

    Read-only. The profile turns capabilities on, so an empty answer is not yet done.
    """
    options = ctx.psb.delivery_options([m.party_id])
    ours, urls = _our_ap(ctx, options, m.party_id)
    if ours:
        detail: dict[str, Any] = {"document_types": len(options)}
        network = _network(ctx)
        if network is not None:
            plan = _capability_plan(ctx, _profile(ctx, m))
            before = parity.received(ctx.snapshot)
            required = required_document_types(plan.capabilities)
            check = (
                network.inbound_published(m.party_id, required, received=before)
                if before
                else network.inbound_published(m.party_id, required)
            )
            detail["network"] = check.observation
            if not check.ok:
                return _network_wait(ctx, m, check, detail)
            if ctx.snapshot is not None:
                missing = check.observation.get("smp", {}).get("received_missing", [])
                published = [dt for dt in before if dt not in missing]
                verdict = parity.judge(
                    ctx.settings.parity.inbound, before, published, baseline=parity.usable(ctx.snapshot)
                )
                return _parity_outcome(verdict, "eConnect's", {**detail, "parity": verdict.detail()})
        return Advance(Trigger.VERIFIED, detail=detail)
    if m.deadline_at is not None and ctx.now >= m.deadline_at:
        return Fail(Trigger.FAIL, reason=f"the party is not reachable through eConnect; seen {urls}", code="VERIFY")
    return Wait(until=next_poll(ctx, _poll_window_start(ctx, m)), detail={"access_points": urls})


def _parity_outcome(verdict: parity.ParityVerdict, whose: str, detail: dict[str, Any]) -> Outcome:
    """The verification's outcome under the parity policy: hold, complete with a warning, or pass."""
    if verdict.action == parity.HOLD:
        return Fail(Trigger.FAIL, reason=verdict.message(whose), code="PARITY", detail=detail)
    if verdict.action == parity.WARN:
        return Advance(Trigger.VERIFIED, detail={**detail, "warning": verdict.message(whose)})
    return Advance(Trigger.VERIFIED, detail=detail)


# ---- outbound (from eConnect) ----------------------------------------------------------


def outbound_prepare(ctx: StepContext, m: MigrationRecord) -> Outcome:
    """GET prepareToMigrate; the key is stored encrypted in the same commit as the move.

    Repeat: the key is committed together with the move to ``key_issued``, so a crash or a
    lost answer between prepareToMigrate and that commit leaves no key stored, and the repeat
    calls prepareToMigrate again. The SML overwrites the key of a repeated prepare (or returns
    the same one), and the first key never left this process, so the fresh key is the only
    one anyone will use. A key stored here can only be an expired one that is being
    re-issued (``key_expired`` -> ``requested``), which must be replaced. Should a key still
    within ``keys.ttl_h`` ever be stored here, it is kept and prepareToMigrate is not called:
    a repeated prepare could invalidate the key the new provider already holds.
    """
    if ctx.vault is None:
        raise PsbPermanentError("keys.encryption_key is not set: cannot store the key", party_id=m.party_id)
    ttl = timedelta(hours=ctx.settings.keys.ttl_h)
    if m.key_ciphertext is not None and m.key_issued_at is not None and ctx.now < m.key_issued_at + ttl:
        stored = mask(_key(ctx, m))
        return Advance(Trigger.KEY_PREPARED, detail={"key": stored, "note": "a valid key is stored already"})
    ctx.fence()  # a stale worker's prepare would replace the key another worker stored
    try:
        key = ctx.psb.prepare_to_migrate(m.party_id)
    except PsbNotFound as exc:
        return Fail(Trigger.FAIL, reason=f"eConnect does not serve this party: {exc.message}", code=exc.code)
    return Advance(
        Trigger.KEY_PREPARED,
        detail={"key": mask(key)},
        key_ciphertext=ctx.vault.encrypt(key, migration_id=m.id, party_id=m.party_id),
        key_issued_at=ctx.now,
    )


def outbound_handoff(ctx: StepContext, m: MigrationRecord) -> Outcome:
    """Hand the key to the new provider (outbox file or HTTPS POST).

    Repeat: the key is handed over again: the same key, so the receiver sees a duplicate
    it can ignore. In ``manual`` mode nothing is sent and the migration waits for
    ``keys export``.
    """
    if ctx.handoff is None:
        return Wait(until=None, detail={"waiting_for": "an operator's `keys export`"})
    key = _key(ctx, m)
    where = ctx.handoff.deliver(
        batch_name=m.batch_name,
        party_id=m.party_id,
        key=key,
        issued_at=m.key_issued_at,
        new_provider=m.new_provider,
    )
    return Advance(Trigger.KEY_HANDED_OFF, detail={**where, "key": mask(key)})


def outbound_await_takeover(ctx: StepContext, m: MigrationRecord) -> Outcome:
    """Poll until a sender's lookup no longer reaches eConnect (with verify.peppol_network,
    also until the SML points at another SMP); expire the key after keys.ttl_h.

    Read-only, so a repeat is harmless.
    """
    options = ctx.psb.delivery_options([m.party_id])
    ours, urls = _our_ap(ctx, options, m.party_id)
    detail: dict[str, Any] = {"access_points": urls}
    taken = bool(urls and not ours)
    if not urls and ctx.psb.get_party_config(m.party_id) is None:
        taken, detail["note"] = True, "no longer at eConnect"
    network = _network(ctx) if taken else None
    if network is not None:
        check = network.outbound_takeover(m.party_id)
        detail["network"] = check.observation
        if not check.ok:
            taken, detail["waiting_for"] = False, check.reason
    if taken:
        return Advance(Trigger.TAKEOVER_CONFIRMED, detail=detail)
    if m.deadline_at is not None and ctx.now >= m.deadline_at:
        return Advance(Trigger.KEY_TIMED_OUT, detail={"key_issued_at": str(m.key_issued_at)})
    return Wait(until=next_poll(ctx, m.key_issued_at), detail=detail)


def _econnect_smp_url(ctx: StepContext) -> str | None:
    """eConnect's SMP base URL: the snapshot's (taken while the party was eConnect's), else
    verify.econnect_smp_host when it is written as a URL (a bare host gets https://)."""
    snap = ctx.snapshot
    if snap is not None and snap.smp_url and (snap.econnect or (ctx.network and ctx.network.is_econnect(snap.smp_url))):
        return snap.smp_url
    host = ctx.settings.verify.econnect_smp_host.strip()
    if not host:
        return None
    return host if "://" in host else f"https://{host}"


def outbound_cleanup(ctx: StepContext, m: MigrationRecord) -> Outcome:
    """Verify eConnect dropped the party (its config, and with verify.peppol_network its SMP's
    ServiceGroup); remove leftover hooks and permissions. Then, with the network on and a
    snapshot, receive parity: the new provider's SMP publishes every type eConnect published
    (``parity.outbound``: ``require`` holds, ``warn`` completes with a ``warning``, ``off``).

    Repeat: deletes of what is already gone answer 404, which counts as done.
    """
    if ctx.psb.get_party_config(m.party_id) is not None:
        return Wait(until=next_poll(ctx, m.key_issued_at), detail={"waiting_for": "eConnect to drop the party"})
    network = _network(ctx)
    seen: dict[str, Any] = {}
    smp_url = _econnect_smp_url(ctx) if network is not None else None
    if network is not None and smp_url is not None:
        gone = network.econnect_lists(m.party_id, smp_url)
        seen.update(gone.observation)
        if not gone.ok:
            return Wait(until=next_poll(ctx, m.key_issued_at), detail={"network": seen, "waiting_for": gone.reason})
    removed_hooks: list[str] = []
    removed_users: list[str] = []
    if ctx.settings.outbound.cleanup:
        for hook in ctx.psb.get_hooks(m.party_id):
            ctx.psb.delete_hook(m.party_id, str(hook["id"]))
            removed_hooks.append(str(hook.get("name") or hook["id"]))
        for user in sorted(set(ctx.settings.outbound.users) | ctx.profiles.all_users()):
            ctx.psb.delete_user_party(user, m.party_id)
            removed_users.append(user)
    detail: dict[str, Any] = {"hooks_removed": removed_hooks, "permissions_removed": removed_users}
    if network is not None:
        detail["network"] = seen
        if ctx.snapshot is not None and ctx.settings.parity.outbound != parity.OFF:
            before = parity.received(ctx.snapshot)
            check = network.outbound_published(m.party_id, before)
            seen.update(check.observation)
            missing = check.observation.get("smp", {}).get("missing", before)
            published = [dt for dt in before if dt not in missing]
            verdict = parity.judge(
                ctx.settings.parity.outbound, before, published, baseline=parity.usable(ctx.snapshot)
            )
            return _parity_outcome(verdict, "the new provider's", {**detail, "parity": verdict.detail()})
    return Advance(Trigger.VERIFIED, detail=detail)


def outbound_expired(ctx: StepContext, m: MigrationRecord) -> Outcome:
    """Re-issue a fresh key when keys.reissue_expired is on; otherwise wait for an operator.

    No remote call: a repeat does nothing twice (``outbound_prepare`` gets the new key).
    """
    if ctx.settings.keys.reissue_expired:
        return Advance(Trigger.REISSUE, detail={"reason": "keys.reissue_expired"})
    return Wait(until=None, detail={"waiting_for": "an operator's retry"})


STEPS: dict[tuple[Direction, State], Step] = {
    (Direction.TO_ECONNECT, State.REQUESTED): inbound_requested,
    (Direction.TO_ECONNECT, State.KEY_ISSUED): inbound_submit_key,
    (Direction.TO_ECONNECT, State.TAKEOVER_SUBMITTED): inbound_await_takeover,
    (Direction.TO_ECONNECT, State.TAKEN_OVER): inbound_configure,
    (Direction.TO_ECONNECT, State.CAPABILITIES_CONFIGURED): inbound_grant,
    (Direction.TO_ECONNECT, State.PERMISSIONS_SET): inbound_verify,
    (Direction.FROM_ECONNECT, State.REQUESTED): outbound_prepare,
    (Direction.FROM_ECONNECT, State.KEY_ISSUED): outbound_handoff,
    (Direction.FROM_ECONNECT, State.KEY_DELIVERED): outbound_await_takeover,
    (Direction.FROM_ECONNECT, State.TAKEN_OVER): outbound_cleanup,
    (Direction.FROM_ECONNECT, State.KEY_EXPIRED): outbound_expired,
}


def step_for(direction: Direction, state: State) -> Step | None:
    return STEPS.get((direction, state))
