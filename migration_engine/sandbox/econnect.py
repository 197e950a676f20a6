"""eConnect's side of the world: its SMP configuration per party, hooks and user permissions.

Pure data with the PSB's validation rules; not thread-safe on its own (``SandboxModel``
calls it under its lock) and unaware of the SML (the model keeps the two consistent).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from migration_engine.clock import Clock
from migration_engine.sandbox import catalog
from migration_engine.sandbox.common import SandboxError, iso, party_id
from migration_engine.sandbox.config import SandboxConfig

PERMISSIONS = (
    "canSendDocument",
    "canReceiveDocument",
    "canRemoveDocument",
    "canManageHook",
    "canChangeDocumentStatus",
)


@dataclass
class PeppolConfig:
    """eConnect's SMP configuration of one party."""

    capabilities: dict[str, str]
    business_card: dict[str, Any]
    created_on: datetime
    changed_on: datetime
    in_migration: bool = False


@dataclass
class Enrollment:
    """A parsed ``PUT /api/v1-beta/{id}/enroll`` body."""

    peppol: bool = False
    capabilities: dict[str, str] | None = None
    business_card: object = None
    authorizations: list[tuple[str, dict[str, bool]]] = field(default_factory=list)


class EConnectData:
    def __init__(self, config: SandboxConfig, clock: Clock) -> None:
        self._clock = clock
        self.env_caps = dict(config.environment_capabilities)
        self.configs: dict[str, PeppolConfig] = {}
        self.retired: dict[str, dict[str, str]] = {}  # capabilities DNS may still lead senders to
        self.hooks: dict[str, dict[str, dict[str, Any]]] = {}
        self.users: dict[str, dict[str, dict[str, Any]]] = {}
        self._hook_seq = 0

    # -- SMP configuration -------------------------------------------------------------------

    def create(self, pid: str) -> PeppolConfig:
        """The party became eConnect's: every capability ``inherited`` from the environment."""
        if pid not in self.configs:
            now = self._clock.now()
            caps = {
                name: catalog.normalise_state(name, "inherited", on) for name, on in self.env_caps.items()
            }
            self.configs[pid] = PeppolConfig(caps, {"state": "off"}, now, now)
            self.retired.pop(pid, None)
        return self.configs[pid]

    def remove(self, pid: str) -> None:
        """The party left eConnect's SMP; until DNS moves on, senders still find these capabilities."""
        cfg = self.configs.pop(pid, None)
        if cfg is not None:
            self.retired[pid] = cfg.capabilities

    def config_json(self, pid: str) -> dict[str, Any]:
        cfg = self.configs[pid]
        return {
            "id": pid,
            "capabilities": catalog.capabilities_json(cfg.capabilities),
            "businessCard": dict(cfg.business_card),
            "createdOn": iso(cfg.created_on),
            "changedOn": iso(cfg.changed_on),
        }

    def parse_caps(self, caps: object) -> dict[str, str]:
        if not isinstance(caps, dict):
            raise SandboxError(400, "capabilities must be an object of capability name to state")
        try:
            return {
                name: catalog.normalise_state(name, value, self.env_caps.get(name, False))
                for name, value in caps.items()
            }
        except ValueError as exc:
            raise SandboxError(400, str(exc)) from None

    @staticmethod
    def check_card(card: object) -> None:
        if card is not None:
            try:
                catalog.merge_business_card({}, card)
            except ValueError as exc:
                raise SandboxError(400, str(exc)) from None

    def apply(self, pid: str, caps: dict[str, str] | None, card: object) -> None:
        cfg = self.configs[pid]
        if caps:
            cfg.capabilities.update(caps)
        if card is not None:
            cfg.business_card = catalog.merge_business_card(cfg.business_card, card)
        cfg.changed_on = self._clock.now()

    def offered(self, pid: str) -> list[catalog.DocumentType]:
        """The document types eConnect's SMP publishes for the party (or did, until DNS moves)."""
        cfg = self.configs.get(pid)
        states = cfg.capabilities if cfg is not None else self.retired.get(pid, {})
        return [
            dt for name, st in states.items() if catalog.is_on(st) for dt in catalog.CAPABILITIES[name][1]
        ]

    # -- hooks -------------------------------------------------------------------------------

    def list_hooks(self, pid: str) -> list[dict[str, Any]]:
        return [dict(h) for h in self.hooks.get(pid, {}).values()]

    def put_hook(self, pid: str, body: object) -> dict[str, Any]:
        """Upsert by ``id`` (must exist) or else by ``name``; a new hook gets an id."""
        if not isinstance(body, dict):
            raise SandboxError(400, "the body must be a Hook object")
        action = body.get("action")
        if not isinstance(action, str) or not action.startswith(("mailto:", "http:", "https:")):
            raise SandboxError(400, "a hook needs an action starting with mailto:, http: or https:")
        topics = body.get("topics", [])
        if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
            raise SandboxError(400, "topics must be a list of topic names")
        hooks = self.hooks.setdefault(pid, {})
        now = iso(self._clock.now())
        hook_id = body.get("id")
        if hook_id not in (None, ""):
            existing = hooks.get(str(hook_id))
            if existing is None:
                raise SandboxError(404, f"Hook {hook_id} does not exist for party {pid}.")
        else:
            existing = next(
                (h for h in hooks.values() if body.get("name") and h["name"] == body.get("name")), None
            )
        if existing is None:
            self._hook_seq += 1
            existing = {"id": str(self._hook_seq), "createdOn": now}
        hook = {
            "id": existing["id"],
            "name": body.get("name") or existing.get("name"),
            "action": action,
            "topics": list(topics),
            "publishTopics": list(body.get("publishTopics") or []),
            "filter": body.get("filter"),
            "init": body.get("init"),
            "isActive": bool(body.get("isActive", True)),
            "createdOn": existing["createdOn"],
            "changedOn": now,
        }
        hooks[hook["id"]] = hook
        return dict(hook)

    def delete_hook(self, pid: str, hook_id: str) -> None:
        if self.hooks.get(pid, {}).pop(hook_id, None) is None:
            raise SandboxError(404, f"Hook {hook_id} does not exist for party {pid}.")

    # -- users' party authorisations ---------------------------------------------------------

    @staticmethod
    def _permissions(value: object) -> dict[str, bool]:
        if value is None:
            value = {}
        if not isinstance(value, dict) or not all(isinstance(v, bool) for v in value.values()):
            raise SandboxError(400, "permissions must be an object of permission name to true/false")
        unknown = set(value) - set(PERMISSIONS)
        if unknown:
            raise SandboxError(
                400, f"unknown permission(s) {sorted(unknown)}; known: {', '.join(PERMISSIONS)}"
            )
        return {name: bool(value.get(name, False)) for name in PERMISSIONS}

    def list_user_parties(self, user: str) -> list[dict[str, Any]]:
        return [dict(p, permissions=dict(p["permissions"])) for p in self.users.get(user, {}).values()]

    def put_user_party(self, user: str, body: object) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise SandboxError(400, "the body must be a UserParty object")
        pid = party_id(body.get("id"))
        name = body.get("name")
        entry: dict[str, Any] = {
            "id": pid,
            "name": name if isinstance(name, str) else None,
            "permissions": self._permissions(body.get("permissions")),
        }
        self.users.setdefault(user, {})[pid] = entry
        return dict(entry, permissions=dict(entry["permissions"]))

    def delete_user_party(self, user: str, pid: str) -> None:
        if self.users.get(user, {}).pop(pid, None) is None:
            raise SandboxError(404, f"User {user} has no authorisation for party {pid}.")

    def permissions_of(self, pid: str) -> dict[str, dict[str, bool]]:
        return {
            user: dict(parties[pid]["permissions"]) for user, parties in self.users.items() if pid in parties
        }

    # -- enrollment --------------------------------------------------------------------------

    def parse_enrollment(self, body: object) -> Enrollment:
        """Both documented shapes: ``services.peppol`` + ``partyAuthorizations`` (newer docs)
        and ``services: [{name: peppolService, config}]`` + ``users`` (psb docs)."""
        if not isinstance(body, dict):
            raise SandboxError(400, "the body must be an enrollment object")
        out = Enrollment()
        services = body.get("services")
        peppol: object = None
        if isinstance(services, dict):
            peppol = services.get("peppol")
        elif isinstance(services, list):
            found = [
                s for s in services if isinstance(s, dict) and s.get("name") in ("peppolService", "peppol")
            ]
            peppol = found[0].get("config", {}) if found else None
        elif services is not None:
            raise SandboxError(400, "services must be an object")
        if peppol is not None:
            if not isinstance(peppol, dict):
                raise SandboxError(400, "services.peppol must be an object")
            out.peppol = True
            if peppol.get("capabilities") is not None:
                out.capabilities = self.parse_caps(peppol["capabilities"])
            out.business_card = peppol.get("businessCard")
            self.check_card(out.business_card)
        auths = body.get("partyAuthorizations") or []
        if not isinstance(auths, list):
            raise SandboxError(400, "partyAuthorizations must be a list")
        for auth in auths:
            if not isinstance(auth, dict) or not isinstance(auth.get("userId"), str):
                raise SandboxError(400, "each party authorization needs a userId")
            out.authorizations.append((auth["userId"], self._permissions(auth.get("permissions"))))
        users = body.get("users") or {}
        if not isinstance(users, dict):
            raise SandboxError(400, "users must be an object of user name to permissions")
        out.authorizations.extend((name, self._permissions(perms)) for name, perms in users.items())
        return out
