"""The simulated world: the SML, eConnect's SMP and PSB data, other providers, and the log of
API calls. Pure Python, thread-safe (one lock), every time from the injected ``Clock``.

Scheduled events (a provider's delayed takeover, DNS propagation) are applied lazily: every
method that reads or changes registrations first applies whatever is due by ``clock.now()``
(``apply_due_events``). No background threads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from migration_engine.clock import Clock, SystemClock
from migration_engine.keys import key_problem
from migration_engine.sandbox import catalog, inspection
from migration_engine.sandbox.calls import CallLog
from migration_engine.sandbox.common import SandboxError, party_id
from migration_engine.sandbox.config import ECONNECT, SandboxConfig
from migration_engine.sandbox.econnect import EConnectData
from migration_engine.sandbox.identity import TokenStore
from migration_engine.sandbox.providers import Providers, Takeover
from migration_engine.sandbox.publications import Publication
from migration_engine.sandbox.sml import ERR_106_TEXT, Sml, SmlFault

KEY_REJECTED = (
    "Migration failed: the migration key is invalid or expired. Request a new key from the current provider."
)
_FAULT_STATUS = {"bad_request": 400, "not_found": 404, "unauthorized": 403, "conflict": 409}


class SandboxModel:
    """The whole simulated world. Party ids may be given in any notation.

    Parts (each usable by tests directly, under ``lock`` when they change something):
    ``sml`` (owners, DNS, migration records), ``econnect`` (eConnect's configs, hooks, user
    permissions), ``providers`` (other providers), ``tokens`` (identity), ``call_log``.
    """

    def __init__(self, config: SandboxConfig | None = None, clock: Clock | None = None) -> None:
        self.config = (config or SandboxConfig()).effective()
        self.clock: Clock = clock or SystemClock()
        self.lock = threading.RLock()
        self.tokens = TokenStore(self.config, self.clock)
        self.sml = Sml(
            self.clock,
            key_ttl_s=self.config.key_ttl_s,
            propagation_delay_s=self.config.propagation_delay_s,
            repeat_prepare=self.config.repeat_prepare,
        )
        self.providers = Providers(self.config.providers)
        self.econnect = EConnectData(self.config, self.clock)
        self.call_log = CallLog(self.clock, self.config.call_log_limit)
        self.publications: dict[str, Publication] = {}
        for pid, owner in self.config.seed_parties:
            self.register(pid, owner)
        for pid, publication in self.config.publications:
            self.publish(pid, publication)

    # -- settings the PSB leaves undocumented (after vary_seed) ---------------------------

    @property
    def key_reject_status(self) -> int:
        return self.config.key_reject_status

    @property
    def repeat_prepare(self) -> str:
        return self.config.repeat_prepare

    # -- time --------------------------------------------------------------------------------

    def apply_due_events(self) -> None:
        """Apply every scheduled takeover and DNS change due by now, in time order."""
        with self.lock:
            now = self.clock.now()
            while (event := self.providers.pop_due(now)) is not None:
                self.sml.advance(event.due)
                self._run_takeover(event)
            self.sml.advance(now)

    def _schedule_takeover(self, provider: str, party: str, key: str, delay_s: float, source: str) -> None:
        due = self.clock.now() + timedelta(seconds=max(delay_s, 0.0))
        self.providers.schedule(provider, party, key, due, source)

    def _run_takeover(self, event: Takeover) -> None:
        outcome = "migrated"
        try:
            self._migrate_to(event.provider, event.party, event.key)
        except SmlFault as fault:
            outcome = f"failed: [{fault.code}] {fault.message}"
        self.providers.record(self.clock.now(), event.provider, event.party, event.source, outcome)

    # -- ownership changes -------------------------------------------------------------------

    def _owner_changed(self, party: str, old: str | None, new: str | None) -> None:
        if old == ECONNECT and new != ECONNECT:
            # The PSB removes the party from its SMP by itself; hooks and user permissions stay.
            self.econnect.remove(party)
        if new == ECONNECT:
            self.econnect.create(party)

    def _migrate_to(self, new_smp: str, party: str, key: str) -> None:
        old = self.sml.migrate(new_smp, party, key)
        self._owner_changed(party, old, new_smp)

    def register(self, party: str, owner: str, capabilities: dict[str, Any] | None = None) -> None:
        """Test seeding: make ``owner`` (``econnect`` or a provider) hold the party now, DNS
        included, forgetting any migration; optional eConnect capabilities."""
        pid = party_id(party)
        with self.lock:
            if owner != ECONNECT:
                self.providers.require(owner)
            self.apply_due_events()
            caps = self.econnect.parse_caps(capabilities) if capabilities is not None else None
            old = self.sml.owner(pid)
            self.sml.register(pid, owner, propagated=True, force=True)
            self._owner_changed(pid, old, owner)
            if caps is not None and owner == ECONNECT:
                self.econnect.apply(pid, caps, None)

    # -- other providers ---------------------------------------------------------------------

    def publish(self, party: str, publication: Publication | None) -> None:
        """What the other provider's SMP holding ``party`` publishes, and the Directory's card
        (``publications.py``); None = back to the default (BIS 3 invoice, no card)."""
        pid = party_id(party)
        with self.lock:
            if publication is None:
                self.publications.pop(pid, None)
            else:
                self.publications[pid] = publication

    def publication(self, party: str) -> Publication:
        """The party's publication, or the default one."""
        with self.lock:
            return self.publications.get(party_id(party)) or Publication()

    def add_provider(self, name: str, ap_url: str) -> None:
        with self.lock:
            self.providers.add(name, ap_url)

    def provider_register(self, provider: str, party: str) -> None:
        """The provider registers a new party in the SML (DNS after the propagation delay)."""
        pid = party_id(party)
        with self.lock:
            self.apply_due_events()
            try:
                self.sml.register(pid, self.providers.require(provider))
            except SmlFault as fault:
                raise SandboxError(409, fault.message, fault.code) from None

    def provider_prepare(self, provider: str, party: str) -> str:
        """The provider calls SML PrepareToMigrate (for a migration to eConnect); the key."""
        pid = party_id(party)
        with self.lock:
            self.apply_due_events()
            try:
                return self.sml.prepare(self.providers.require(provider), pid)
            except SmlFault as fault:
                raise SandboxError(_FAULT_STATUS[fault.kind], fault.message, fault.code) from None

    def provider_handoff(self, provider: str, party: str, key: object) -> None:
        """The provider receives a key; it calls Migrate after ``takeover_delay_s`` (the
        outcome shows in ``provider_log()``)."""
        pid = party_id(party)
        if not isinstance(key, str) or not key:
            raise SandboxError(400, "migrationKey is required")
        with self.lock:
            self.providers.require(provider)
            self._schedule_takeover(provider, pid, key, self.config.takeover_delay_s, "handoff")
            self.apply_due_events()

    def provider_migrate(self, provider: str, party: str, key: object) -> None:
        """The provider calls SML Migrate now."""
        pid = party_id(party)
        if not isinstance(key, str):
            raise SandboxError(400, "migrationKey is required")
        with self.lock:
            self.apply_due_events()
            try:
                self._migrate_to(self.providers.require(provider), pid, key)
            except SmlFault as fault:
                raise SandboxError(_FAULT_STATUS[fault.kind], fault.message, fault.code) from None
            self.providers.record(self.clock.now(), provider, pid, "migrate", "migrated")

    def provider_log(self) -> list[dict[str, Any]]:
        """What the providers did (takeovers and their outcomes) and what they will do."""
        with self.lock:
            self.apply_due_events()
            return self.providers.log()

    # -- PSB: Peppol -------------------------------------------------------------------------

    def _require_econnect(self, pid: str) -> None:
        if pid not in self.econnect.configs or self.sml.owner(pid) != ECONNECT:
            raise SandboxError(404, f"Party {pid} is not registered at eConnect's SMP.")

    def psb_prepare_to_migrate(self, party: str) -> str:
        """``GET /peppol/{id}/prepareToMigrate``: SML prepare by eConnect; the key."""
        pid = party_id(party)
        with self.lock:
            self.apply_due_events()
            self._require_econnect(pid)
            key = self.sml.prepare(ECONNECT, pid)
            self.econnect.configs[pid].in_migration = True
            if self.config.auto_takeover_after_s is not None:
                self._schedule_takeover(
                    self.providers.default, pid, key, self.config.auto_takeover_after_s, "auto"
                )
            return key

    def psb_get_config(self, party: str) -> dict[str, Any]:
        pid = party_id(party)
        with self.lock:
            self.apply_due_events()
            self._require_econnect(pid)
            return self.econnect.config_json(pid)

    def psb_list_configs(self) -> list[str]:
        with self.lock:
            self.apply_due_events()
            return sorted(p for p in self.econnect.configs if self.sml.owner(p) == ECONNECT)

    def psb_put_config(self, party: str, body: object) -> dict[str, Any]:
        """``PUT /peppol/config/party/{id}``: migration-in with a key, or create/update."""
        pid = party_id(party)
        if not isinstance(body, dict):
            raise SandboxError(400, "the body must be a PeppolConfig object")
        with self.lock:
            self.apply_due_events()
            caps = (
                self.econnect.parse_caps(body["capabilities"])
                if body.get("capabilities") is not None
                else None
            )
            card = body.get("businessCard")
            self.econnect.check_card(card)  # validate everything before changing anything
            if body.get("migration") is not None:
                self._migrate_in(pid, body["migration"])
            else:
                self._register_at_econnect(pid)
            self.econnect.apply(pid, caps, card)
            return self.econnect.config_json(pid)

    def _register_at_econnect(self, pid: str) -> None:
        owner = self.sml.owner(pid)
        if owner not in (None, ECONNECT):
            raise SandboxError(
                409,
                f"Party {pid} is registered at another SMP; migrate it with a key from its current provider.",
            )
        if owner is None:
            self.sml.register(pid, ECONNECT)
            self._owner_changed(pid, None, ECONNECT)

    def _migrate_in(self, pid: str, migration: object) -> None:
        key = migration.get("key") if isinstance(migration, dict) else None
        if not isinstance(key, str):
            raise SandboxError(400, "migration.key is required")
        if key_problem(key) is not None:
            raise SandboxError(400, ERR_106_TEXT)
        record = self.sml.record(pid)
        if (
            self.sml.owner(pid) == ECONNECT
            and record is not None
            and record.migrated
            and record.new_smp == ECONNECT
            and record.key == key
        ):
            return  # a replay of the migration that made the party eConnect's (e.g. after a crash)
        try:
            self._migrate_to(ECONNECT, pid, key)
        except SmlFault as fault:
            raise SandboxError(self.key_reject_status, f"{KEY_REJECTED} (SML {fault.code})") from None

    def psb_delete_config(self, party: str) -> None:
        """``DELETE /peppol/config/party/{id}``: removes eConnect's registration (SML too)."""
        pid = party_id(party)
        with self.lock:
            self.apply_due_events()
            self._require_econnect(pid)
            try:
                self.sml.unregister(pid, ECONNECT)
            except SmlFault as fault:
                raise SandboxError(409, fault.message) from None
            self._owner_changed(pid, ECONNECT, None)

    def delivery_options(
        self,
        party_ids: Iterable[str],
        document_type_ids: Iterable[str] = (),
        document_family: str | None = None,
        preferred_document_type_id: str | None = None,
    ) -> list[dict[str, str]]:
        """What a sender finds for each party through DNS (the DNS-visible SMP)."""
        pids = [party_id(p) for p in party_ids]
        wanted = set(document_type_ids)
        out: list[dict[str, str]] = []
        with self.lock:
            self.apply_due_events()
            for pid in dict.fromkeys(pids):
                smp = self.sml.owner(pid) if self.config.delivery_view == "owner" else self.sml.dns_smp(pid)
                if smp == ECONNECT:
                    types = self.econnect.offered(pid)
                    url, cert = self.config.access_point_url, self.config.access_point_certificate
                elif smp is not None and smp in self.providers.ap_urls:
                    types = list(catalog.ALL_DOCUMENT_TYPES)
                    url, cert = self.providers.ap_urls[smp], self.providers.certificate(smp)
                else:
                    continue
                out.extend(
                    catalog.options(
                        pid,
                        types,
                        url,
                        cert,
                        wanted,
                        document_family,
                        preferred_document_type_id,
                        limit=None if smp == ECONNECT else 1,  # another provider: one option, its AP
                    )
                )
        return out

    # -- PSB: hooks, users, enrollment -------------------------------------------------------

    def list_hooks(self, party: str) -> list[dict[str, Any]]:
        pid = party_id(party)
        with self.lock:
            return self.econnect.list_hooks(pid)

    def put_hook(self, party: str, body: object) -> dict[str, Any]:
        pid = party_id(party)
        with self.lock:
            return self.econnect.put_hook(pid, body)

    def delete_hook(self, party: str, hook_id: str) -> None:
        pid = party_id(party)
        with self.lock:
            self.econnect.delete_hook(pid, hook_id)

    def list_user_parties(self, user: str) -> list[dict[str, Any]]:
        with self.lock:
            return self.econnect.list_user_parties(user)

    def put_user_party(self, user: str, body: object) -> dict[str, Any]:
        with self.lock:
            return self.econnect.put_user_party(user, body)

    def delete_user_party(self, user: str, party: str) -> None:
        pid = party_id(party)
        with self.lock:
            self.econnect.delete_user_party(user, pid)

    def enroll(self, party: str, body: object) -> object:
        """``PUT /api/v1-beta/{id}/enroll``: registers the party at eConnect when it is new,
        applies the Peppol service to it and the party authorisations; echoes the body."""
        pid = party_id(party)
        with self.lock:
            self.apply_due_events()
            enrollment = self.econnect.parse_enrollment(body)
            if enrollment.peppol:
                self._register_at_econnect(pid)
                self.econnect.apply(pid, enrollment.capabilities, enrollment.business_card)
            for user, permissions in enrollment.authorizations:
                self.econnect.put_user_party(user, {"id": pid, "permissions": permissions})
            return body

    # -- the call log ------------------------------------------------------------------------

    def calls(self, party: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        """The API calls received (oldest first), optionally for one party and after ``since``."""
        return self.call_log.list(party_id(party) if party is not None else None, since)

    def calls_in_flight(self, party: str | None = None) -> list[dict[str, Any]]:
        """The API calls received and not answered yet (e.g. sleeping out ``latency_ms``)."""
        return self.call_log.in_flight(party_id(party) if party is not None else None)

    # -- inspection --------------------------------------------------------------------------

    def owner(self, party: str) -> str | None:
        pid = party_id(party)
        with self.lock:
            self.apply_due_events()
            return self.sml.owner(pid)

    def dns_smp(self, party: str) -> str | None:
        pid = party_id(party)
        with self.lock:
            self.apply_due_events()
            return self.sml.dns_smp(pid)

    def issued_keys(self) -> list[str]:
        """Every migration key the SML stored (eConnect's and the providers'), oldest first;
        test data, for checks that no key leaks into logs or reports."""
        with self.lock:
            return list(self.sml.issued)

    def party(self, party: str) -> dict[str, Any] | None:
        """Everything known about one party (test-only: includes the migration key)."""
        pid = party_id(party)
        with self.lock:
            self.apply_due_events()
            return inspection.describe(pid, self.sml, self.econnect)

    def parties(self) -> list[dict[str, Any]]:
        with self.lock:
            self.apply_due_events()
            found = (
                inspection.describe(pid, self.sml, self.econnect)
                for pid in inspection.known_parties(self.sml, self.econnect)
            )
            return [info for info in found if info is not None]
