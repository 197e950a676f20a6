"""Profiles: what to configure at eConnect after an inbound takeover.

A profile is ``{profiles.dir}/NAME.toml`` with capabilities (``on``/``off``/``inherited``),
hooks (name, action, topics), users with their party permissions, and an optional
business card. See ``config/profiles/default.toml``. With ``profiles.dir`` empty (the
default) the profiles shipped in the package (``migration_engine.defaults``, built from
``config/profiles``) are used, so an installed copy works from any working directory.

A business card's fields are each optional: a field the profile sets overrides what the
party's snapshot shows, a field it leaves out is carried from the snapshot (receive parity).

The capability map (``CapabilityMap``, ``parity.capability_map``, shipped as
``config/capability_map.toml``) says which PSB capability publishes a Peppol document type.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from migration_engine.errors import ConfigError

DEFAULTS_PACKAGE = "migration_engine.defaults"
CAPABILITY_STATES = ("on", "off", "inherited")
PERMISSIONS = (
    "canSendDocument",
    "canReceiveDocument",
    "canRemoveDocument",
    "canManageHook",
    "canChangeDocumentStatus",
)


@dataclass(frozen=True)
class HookSpec:
    name: str
    action: str
    topics: tuple[str, ...]


@dataclass(frozen=True)
class UserGrant:
    name: str
    permissions: Mapping[str, bool]


@dataclass(frozen=True)
class BusinessCardSpec:
    """A profile's business card fields; an empty field is not set by the profile."""

    country_code: str = ""
    geo_info: str = ""
    email: str = ""


@dataclass(frozen=True)
class Profile:
    name: str
    capabilities: Mapping[str, str]
    hooks: tuple[HookSpec, ...] = ()
    users: tuple[UserGrant, ...] = ()
    business_card: BusinessCardSpec | None = None

    def capability_body(self) -> dict[str, Any]:
        """The ``capabilities`` object of a PSB party config PUT."""
        return {name: {"state": state} for name, state in self.capabilities.items()}


def _parse(name: str, data: Mapping[str, Any], where: str) -> Profile:
    known = {"capabilities", "hooks", "users", "business_card"}
    for key in data:
        if key not in known:
            raise ConfigError(f"{where}: unknown key {key!r}; known: {', '.join(sorted(known))}")
    caps = data.get("capabilities", {})
    if not isinstance(caps, dict):
        raise ConfigError(f"{where}: [capabilities] must be a table")
    for cap, state in caps.items():
        if state not in CAPABILITY_STATES:
            raise ConfigError(f"{where}: capability {cap} = {state!r}; use one of {', '.join(CAPABILITY_STATES)}")
    hooks = []
    for i, hook in enumerate(data.get("hooks", []), 1):
        try:
            topics = hook["topics"]
            if not isinstance(topics, list) or not topics:
                raise ConfigError(f"{where}: hook {i} needs a non-empty topics list")
            hooks.append(HookSpec(name=str(hook["name"]), action=str(hook["action"]), topics=tuple(map(str, topics))))
        except (KeyError, TypeError):
            raise ConfigError(f"{where}: hook {i} needs name, action and topics") from None
    users = []
    for i, user in enumerate(data.get("users", []), 1):
        if not isinstance(user, dict) or "name" not in user:
            raise ConfigError(f"{where}: user {i} needs a name")
        perms = user.get("permissions", {})
        bad = [p for p in perms if p not in PERMISSIONS]
        if bad:
            raise ConfigError(f"{where}: user {user['name']}: unknown permission(s) {', '.join(bad)}")
        users.append(UserGrant(name=str(user["name"]), permissions={p: bool(perms.get(p, False)) for p in PERMISSIONS}))
    card = data.get("business_card")
    business_card = None
    if card is not None:
        if not isinstance(card, dict):
            raise ConfigError(f"{where}: [business_card] must be a table")
        unknown = sorted(set(card) - {"country_code", "geo_info", "email"})
        if unknown:
            raise ConfigError(f"{where}: business_card: unknown key(s) {', '.join(unknown)}")
        if "country_code" in card and len(str(card["country_code"])) != 2:
            raise ConfigError(f"{where}: business_card needs a two-letter country_code (or none)")
        business_card = BusinessCardSpec(
            country_code=str(card.get("country_code", "")).upper(),
            geo_info=str(card.get("geo_info", "")),
            email=str(card.get("email", "")),
        )
    return Profile(
        name=name, capabilities=dict(caps), hooks=tuple(hooks), users=tuple(users), business_card=business_card
    )


class ProfileCatalog:
    """The profiles of one folder, read once and checked up front."""

    def __init__(self, profiles: Mapping[str, Profile]) -> None:
        self._profiles = dict(profiles)

    @classmethod
    def load(cls, folder: str | Path | None = None) -> ProfileCatalog:
        """The profiles of ``folder``; None or an empty string means the packaged profiles."""
        if folder is None or (isinstance(folder, str) and not folder.strip()):
            return cls.packaged()
        path = Path(folder)
        if not path.is_dir():
            raise ConfigError(f"profiles folder {path} does not exist (setting profiles.dir)")
        return cls._read(sorted(path.glob("*.toml")))

    @classmethod
    def packaged(cls) -> ProfileCatalog:
        """The profiles installed with the package (the repository's ``config/profiles``)."""
        try:
            folder = resources.files(DEFAULTS_PACKAGE).joinpath("profiles")
            files = sorted((f for f in folder.iterdir() if f.name.endswith(".toml")), key=lambda f: f.name)
        except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError) as exc:
            raise ConfigError(
                f"the packaged profiles ({DEFAULTS_PACKAGE}) are missing; reinstall peppol-migrate "
                f"or set profiles.dir ({exc})"
            ) from None
        return cls._read(files)

    @classmethod
    def _read(cls, files: Iterable[Path | Traversable]) -> ProfileCatalog:
        profiles = {}
        for file in files:
            name = file.name.removesuffix(".toml")
            try:
                data = tomllib.loads(file.read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"profile {file} is not valid TOML: {exc}") from None
            profiles[name] = _parse(name, data, str(file))
        return cls(profiles)

    def names(self) -> set[str]:
        return set(self._profiles)

    def get(self, name: str) -> Profile:
        try:
            return self._profiles[name]
        except KeyError:
            raise ConfigError(
                f"profile {name!r} does not exist; known: {', '.join(sorted(self._profiles)) or 'none'}"
            ) from None

    def all_users(self) -> set[str]:
        return {user.name for profile in self._profiles.values() for user in profile.users}


# ---- the capability map (receive parity) --------------------------------------------------

CAPABILITY_MAP_FILE = "capability_map.toml"
DOCUMENT_SCHEME = "busdox-docid-qns::"


def document_type_id(value: str) -> str:
    """A document type identifier without its ``busdox-docid-qns::`` scheme, trimmed."""
    value = value.strip()
    return value[len(DOCUMENT_SCHEME) :] if value.startswith(DOCUMENT_SCHEME) else value


@dataclass(frozen=True)
class CapabilityEntry:
    document_type: str
    capability: str
    processes: tuple[str, ...] = ()  # empty: any process


class CapabilityMap:
    """Peppol document type (and, optionally, process) -> the PSB capability that publishes it."""

    def __init__(self, entries: Iterable[CapabilityEntry], source: str = "") -> None:
        self.entries = tuple(entries)
        self.source = source
        self._by_type: dict[str, list[CapabilityEntry]] = {}
        for entry in self.entries:
            self._by_type.setdefault(entry.document_type, []).append(entry)

    @classmethod
    def load(cls, path: str | Path | None = None) -> CapabilityMap:
        """The map of ``path``; None or an empty string means the shipped one."""
        if path is None or (isinstance(path, str) and not path.strip()):
            try:
                file: Path | Traversable = resources.files(DEFAULTS_PACKAGE).joinpath(CAPABILITY_MAP_FILE)
                text = file.read_text(encoding="utf-8")
            except (ModuleNotFoundError, FileNotFoundError) as exc:
                raise ConfigError(
                    f"the shipped capability map ({DEFAULTS_PACKAGE}/{CAPABILITY_MAP_FILE}) is missing; "
                    f"reinstall peppol-migrate or set parity.capability_map ({exc})"
                ) from None
            return cls.parse(text, f"{DEFAULTS_PACKAGE}/{CAPABILITY_MAP_FILE}")
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"capability map {file} does not exist (setting parity.capability_map)") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"capability map {file} cannot be read (setting parity.capability_map): {exc}") from None
        return cls.parse(text, str(file))

    @classmethod
    def parse(cls, text: str, where: str) -> CapabilityMap:
        """A map from its TOML text; ``ConfigError`` naming ``where`` and the entry when malformed."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"capability map {where} is not valid TOML: {exc}") from None
        unknown = sorted(set(data) - {"document_types"})
        if unknown:
            raise ConfigError(f"capability map {where}: unknown key(s) {', '.join(unknown)}; known: document_types")
        rows = data.get("document_types", [])
        if not isinstance(rows, list):
            raise ConfigError(f"capability map {where}: document_types must be a list of tables ([[document_types]])")
        entries = []
        for i, row in enumerate(rows, 1):
            here = f"capability map {where}, entry {i}"
            if not isinstance(row, dict):
                raise ConfigError(f"{here}: must be a table with id and capability")
            extra = sorted(set(row) - {"id", "capability", "processes"})
            if extra:
                raise ConfigError(f"{here}: unknown key(s) {', '.join(extra)}; known: id, capability, processes")
            doc, cap, procs = row.get("id"), row.get("capability"), row.get("processes", [])
            if not isinstance(doc, str) or not document_type_id(doc):
                raise ConfigError(f"{here}: id must be a document type identifier")
            if not isinstance(cap, str) or not cap.strip():
                raise ConfigError(f"{here}: capability must name a PSB capability (e.g. invoices)")
            if not isinstance(procs, list) or not all(isinstance(p, str) and p.strip() for p in procs):
                raise ConfigError(f"{here}: processes must be a list of process identifiers")
            entries.append(CapabilityEntry(document_type_id(doc), cap.strip(), tuple(p.strip() for p in procs)))
        return cls(entries, where)

    def capabilities_for(self, document_type: str, processes: Iterable[str] = ()) -> list[str]:
        """The capabilities that publish ``document_type`` as received under ``processes``; [] if none.

        Per process, an entry naming that process wins over one naming none; a type seen with
        no process takes the entries that name none."""
        entries = self._by_type.get(document_type_id(document_type), [])
        generic = [e.capability for e in entries if not e.processes]
        found: list[str] = []
        for process in list(processes) or [""]:
            specific = [e.capability for e in entries if process and process in e.processes]
            found.extend(specific or generic)
        return list(dict.fromkeys(found))
