"""Typed settings: defaults here, a TOML file over them, ``PEPPOL_MIGRATE_*`` over that.

The defaults live in these dataclasses, the single source; ``config/default.toml`` lists
every one of them with its meaning, and a test keeps the two equal. Settings are built once
at the edge (the CLI) and passed in: nothing reads them at import time.

Layers, later wins:
1. the defaults below;
2. ``--config FILE`` or ``PEPPOL_MIGRATE_CONFIG`` (TOML, same sections and keys);
3. ``PEPPOL_MIGRATE_<SECTION>__<KEY>`` for one value, e.g. ``PEPPOL_MIGRATE_PSB__BASE_URL``.

Secrets (``SECRET_KEYS``) come only from the environment, or from a file named by
``PEPPOL_MIGRATE_<SECTION>__<KEY>_FILE``; a config file that holds one is refused.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migration_engine.errors import ConfigError

ENV_PREFIX = "PEPPOL_MIGRATE_"


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = "sqlite:///peppol-migrate.db"


@dataclass(frozen=True)
class PsbSettings:
    base_url: str = "https://accp-psb.econnect.eu"
    identity_url: str = "https://accp-identity.econnect.eu"
    client_id: str = ""
    username: str = ""
    client_secret: str = field(default="", repr=False)
    password: str = field(default="", repr=False)
    subscription_key: str = field(default="", repr=False)
    access_point_url: str = "https://accp-ap.econnect.eu/as4/v1"
    timeout_s: float = 30.0
    max_rps: float = 20.0
    verify_tls: bool = True


@dataclass(frozen=True)
class WorkerSettings:
    concurrency: int = 8
    poll_interval_s: float = 1.0
    lease_s: float = 60.0


@dataclass(frozen=True)
class RetrySettings:
    max_attempts: int = 8
    base_s: float = 2.0
    max_s: float = 600.0


@dataclass(frozen=True)
class TakeoverSettings:
    poll_s: float = 30.0
    poll_max_s: float = 900.0
    deadline_h: float = 72.0


@dataclass(frozen=True)
class KeysSettings:
    ttl_h: float = 168.0
    reissue_expired: bool = False
    encryption_key: str = field(default="", repr=False)


@dataclass(frozen=True)
class HandoffSettings:
    mode: str = "outbox"
    outbox_dir: str = "outbox"
    endpoint: str = ""


@dataclass(frozen=True)
class OutboundSettings:
    cleanup: bool = True
    users: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProfilesSettings:
    dir: str = "config/profiles"
    default: str = "default"


@dataclass(frozen=True)
class VerifySettings:
    peppol_network: bool = False
    sml_zone: str = "participant.sml.prod.tech.peppol.org"
    dns_server: str = ""
    econnect_smp_host: str = ""
    cname_fallback: bool = False
    timeout_s: float = 5.0


@dataclass(frozen=True)
class Settings:
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    psb: PsbSettings = field(default_factory=PsbSettings)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    retry: RetrySettings = field(default_factory=RetrySettings)
    takeover: TakeoverSettings = field(default_factory=TakeoverSettings)
    keys: KeysSettings = field(default_factory=KeysSettings)
    handoff: HandoffSettings = field(default_factory=HandoffSettings)
    outbound: OutboundSettings = field(default_factory=OutboundSettings)
    profiles: ProfilesSettings = field(default_factory=ProfilesSettings)
    verify: VerifySettings = field(default_factory=VerifySettings)


SECRET_KEYS: frozenset[tuple[str, str]] = frozenset(
    {
        ("psb", "client_secret"),
        ("psb", "password"),
        ("psb", "subscription_key"),
        ("keys", "encryption_key"),
    }
)
HANDOFF_MODES = ("outbox", "https", "manual")


def _sections() -> dict[str, type[Any]]:
    return {f.name: typing.get_type_hints(Settings)[f.name] for f in dataclasses.fields(Settings)}


def _coerce(value: Any, kind: Any, where: str) -> Any:
    """Turn a TOML or environment value into the field's type, or say what is wrong."""
    origin = typing.get_origin(kind)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
            return value.strip().lower() in {"1", "true", "yes", "on"}
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if kind is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a whole number, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a whole number, got {value!r}") from None
    if kind is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected text, got {value!r}")
        return value
    if origin is tuple:
        items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(v, str) for v in items):
            raise ConfigError(f"{where}: expected a list of text, got {value!r}")
        return tuple(items)
    if isinstance(kind, types.UnionType):  # pragma: no cover - no optional fields yet
        return value
    raise ConfigError(f"{where}: unsupported setting type {kind!r}")  # pragma: no cover


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def load_settings(config_file: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from defaults, an optional TOML file and the environment."""
    env = os.environ if env is None else env
    values: dict[str, dict[str, Any]] = {name: {} for name in _sections()}
    hints = {name: typing.get_type_hints(cls) for name, cls in _sections().items()}

    path = config_file or env.get(ENV_PREFIX + "CONFIG")
    if path:
        data = _read_file(Path(path))
        for section, body in data.items():
            if section not in values:
                raise ConfigError(f"{path}: unknown section [{section}]; known: {', '.join(values)}")
            if not isinstance(body, dict):
                raise ConfigError(f"{path}: [{section}] must be a table")
            for key, value in body.items():
                where = f"{path}: {section}.{key}"
                if key not in hints[section]:
                    raise ConfigError(f"{where} is not a setting; known: {', '.join(hints[section])}")
                if (section, key) in SECRET_KEYS:
                    raise ConfigError(
                        f"{where} is a secret: set {ENV_PREFIX}{section.upper()}__{key.upper()} in the environment "
                        "instead of writing it in a file"
                    )
                values[section][key] = _coerce(value, hints[section][key], where)

    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].partition("__")
        section, key = section.lower(), key.lower()
        from_file = key.endswith("_file") and (section, key[: -len("_file")]) in SECRET_KEYS
        if from_file:
            key = key[: -len("_file")]
            try:
                raw = Path(raw).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"{name}: cannot read the secret file: {exc.strerror}") from None
        if section not in values or key not in hints[section]:
            raise ConfigError(f"{name} is not a setting (see config/default.toml for the names)")
        values[section][key] = _coerce(raw, hints[section][key], name)

    built = {name: cls(**values[name]) for name, cls in _sections().items()}
    settings = Settings(**built)
    _check(settings)
    return settings


def _check(settings: Settings) -> None:
    if settings.handoff.mode not in HANDOFF_MODES:
        raise ConfigError(f"handoff.mode must be one of {', '.join(HANDOFF_MODES)}, got {settings.handoff.mode!r}")
    if settings.handoff.mode == "https" and not settings.handoff.endpoint:
        raise ConfigError("handoff.mode is https but handoff.endpoint is empty")
    if settings.worker.concurrency < 1:
        raise ConfigError("worker.concurrency must be at least 1")
    if settings.worker.lease_s <= 0 or settings.worker.poll_interval_s <= 0:
        raise ConfigError("worker.lease_s and worker.poll_interval_s must be positive")
    if settings.retry.max_attempts < 1:
        raise ConfigError("retry.max_attempts must be at least 1")
    if settings.verify.peppol_network and not settings.verify.econnect_smp_host.strip():
        raise ConfigError("verify.peppol_network is on: set verify.econnect_smp_host to eConnect's SMP host")
    if settings.verify.timeout_s <= 0:
        raise ConfigError("verify.timeout_s must be positive")


def with_overrides(settings: Settings, **sections: Mapping[str, Any]) -> Settings:
    """A copy with some values replaced, e.g. ``with_overrides(s, worker={"concurrency": 4})``."""
    changed = {name: dataclasses.replace(getattr(settings, name), **dict(body)) for name, body in sections.items()}
    result = dataclasses.replace(settings, **changed)
    _check(result)
    return result


def as_dict(settings: Settings, *, mask_secrets: bool = True) -> dict[str, dict[str, Any]]:
    """Every setting by section; secrets shown only as set or not set."""
    out: dict[str, dict[str, Any]] = {}
    for section in dataclasses.fields(settings):
        body = dataclasses.asdict(getattr(settings, section.name))
        for key in list(body):
            if mask_secrets and (section.name, key) in SECRET_KEYS:
                body[key] = "(set)" if body[key] else "(not set)"
            elif isinstance(body[key], tuple):
                body[key] = list(body[key])
        out[section.name] = body
    return out
