"""Typed settings: defaults here, a TOML file over them, ``PEPPOL_MIGRATE_*`` over that.

The defaults live in these dataclasses, the single source; ``config/default.toml`` (shipped
in the package as ``migration_engine.defaults``) lists every one of them with its meaning,
and a test keeps the two equal. Settings are built once at the edge (the CLI) and passed in:
nothing reads them at import time.

Layers, later wins:
1. the defaults below, with ``psb.environment`` filling in the URLs and the SML zone of
   eConnect's acceptance or production environment (a value set explicitly wins over it);
2. one TOML file (same sections and keys), the first of: ``--config FILE``,
   ``PEPPOL_MIGRATE_CONFIG``, ``./peppol-migrate.toml``,
   ``${XDG_CONFIG_HOME}/peppol-migrate/config.toml`` (``~/.config/...`` by default);
3. ``PEPPOL_MIGRATE_<SECTION>__<KEY>`` for one value, e.g. ``PEPPOL_MIGRATE_PSB__BASE_URL``.

Relative paths in a file resolve against that file's folder, so a file means the same from
any working directory; relative paths from the environment or the defaults resolve against
the working directory, as a shell user expects.

Secrets (``SECRET_KEYS``) come only from the environment, or from a file named by
``PEPPOL_MIGRATE_<SECTION>__<KEY>_FILE``; a config file that holds one is refused.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from migration_engine.errors import ConfigError

ENV_PREFIX = "PEPPOL_MIGRATE_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"
CONFIG_FILE_NAME = "peppol-migrate.toml"
USER_CONFIG = Path("peppol-migrate", "config").with_suffix(".toml")
DEFAULTS_PACKAGE = "migration_engine.defaults"

log = logging.getLogger("migration_engine.settings")


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = "sqlite:///peppol-migrate.db"


@dataclass(frozen=True)
class PsbSettings:
    environment: str = "acceptance"
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
    dir: str = ""
    default: str = "default"


@dataclass(frozen=True)
class VerifySettings:
    peppol_network: bool = False
    sml_zone: str = "participant.sml.test.tech.peppol.org"
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

# What ``psb.environment`` sets. eConnect's public documentation gives the PSB and identity
# URLs of both; the acceptance AP URL is what acceptance's delivery options show. The
# production AP URL is not published, so production leaves it empty and the loader asks
# for it rather than guess: a wrong one would make every takeover look unfinished.
ENVIRONMENTS: dict[str, dict[tuple[str, str], str]] = {
    "acceptance": {
        ("psb", "base_url"): "https://accp-psb.econnect.eu",
        ("psb", "identity_url"): "https://accp-identity.econnect.eu",
        ("psb", "access_point_url"): "https://accp-ap.econnect.eu/as4/v1",
        ("verify", "sml_zone"): "participant.sml.test.tech.peppol.org",
    },
    "production": {
        ("psb", "base_url"): "https://psb.econnect.eu",
        ("psb", "identity_url"): "https://identity.econnect.eu",
        ("psb", "access_point_url"): "",
        ("verify", "sml_zone"): "participant.sml.prod.tech.peppol.org",
    },
}

# Settings that name a file or folder: relative values from a config file are made absolute
# against that file's folder. ``database.url`` is handled apart (only SQLite URLs hold a path).
PATH_SETTINGS: frozenset[tuple[str, str]] = frozenset({("handoff", "outbox_dir"), ("profiles", "dir")})


# --- where a value came from ----------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """Where one setting's value came from, to name it in errors and in ``config show``."""

    kind: Literal["default", "environment-preset", "file", "variable", "override"]
    name: str = ""  # the file's path, the variable's name, or the environment's name

    def describe(self, setting: str) -> str:
        """A phrase for an error message, e.g. ``/etc/pm.toml, key worker.concurrency``."""
        if self.kind == "file":
            return f"{self.name}, key {setting}"
        if self.kind == "variable":
            return f"environment variable {self.name}"
        if self.kind == "environment-preset":
            return f"psb.environment = {self.name}"
        if self.kind == "override":
            return "an override of the loaded settings"
        return "the default"

    def __str__(self) -> str:
        if self.kind == "environment-preset":
            return f"psb.environment ({self.name})"
        return self.name or self.kind


DEFAULT_SOURCE = Source("default")


@dataclass(frozen=True)
class ConfigChoice:
    """The config file that counts, and which step of the discovery order found it."""

    path: Path
    found_by: str


@dataclass(frozen=True)
class LoadedSettings:
    """Settings with the source of each value (``"section.key"`` -> Source) and the file used."""

    settings: Settings
    sources: Mapping[str, Source]
    config: ConfigChoice | None
    searched: tuple[str, ...]


# --- discovery --------------------------------------------------------------------------------


def config_candidates(
    explicit: str | Path | None, env: Mapping[str, str], cwd: Path | None
) -> list[tuple[Path, str, bool]]:
    """The discovery order as (path, found_by, must_exist); the first that applies wins.

    ``--config`` and ``PEPPOL_MIGRATE_CONFIG`` name a file that must exist; the working
    directory's and the user's file count only when they exist. ``cwd`` None skips the
    working directory; the user's folder comes from ``XDG_CONFIG_HOME`` or ``HOME`` in ``env``,
    so a caller that passes its own environment without them is not affected by the machine.
    """
    base = cwd if cwd is not None else Path.cwd()
    found: list[tuple[Path, str, bool]] = []
    if explicit:
        found.append((_absolute(Path(explicit).expanduser(), base), "--config", True))
    named = env.get(CONFIG_ENV, "").strip()
    if named:
        found.append((_absolute(Path(named).expanduser(), base), CONFIG_ENV, True))
    if cwd is not None:
        found.append((cwd / CONFIG_FILE_NAME, f"./{CONFIG_FILE_NAME} in the working directory", False))
    xdg = env.get("XDG_CONFIG_HOME", "").strip()
    if xdg and Path(xdg).is_absolute():  # the XDG spec: a relative value is ignored
        found.append((Path(xdg) / USER_CONFIG, f"$XDG_CONFIG_HOME/{USER_CONFIG.as_posix()}", False))
    elif env.get("HOME", "").strip():
        found.append((Path(env["HOME"]) / ".config" / USER_CONFIG, f"~/.config/{USER_CONFIG.as_posix()}", False))
    return found


def discover_config(explicit: str | Path | None, env: Mapping[str, str], cwd: Path | None) -> ConfigChoice | None:
    """The one config file to read, in the documented order, or None for none.

    Order: ``explicit`` (``--config``), ``PEPPOL_MIGRATE_CONFIG``, ``./peppol-migrate.toml``
    (when ``cwd`` is given), ``${XDG_CONFIG_HOME}/peppol-migrate/config.toml`` (default
    ``~/.config/...``). Only one file is read: files are not merged, so what a run uses is
    one file an operator can open.
    """
    for path, found_by, must_exist in config_candidates(explicit, env, cwd):
        if must_exist:
            if not path.is_file():
                why = "is not a file" if path.exists() else "does not exist"
                raise ConfigError(f"config file {path} (from {found_by}) {why}")
            return ConfigChoice(path, found_by)
        if path.is_file():
            return ConfigChoice(path, found_by)
    return None


def _absolute(path: Path, base: Path) -> Path:
    # Lexical, not resolve(): a symlinked config file keeps its own folder as the base of its paths.
    return Path(os.path.normpath(path if path.is_absolute() else base / path))


# --- packaged files ---------------------------------------------------------------------------


def packaged_defaults_text() -> str:
    """``config/default.toml`` as installed with the package (every setting with its meaning)."""
    try:
        return resources.files(DEFAULTS_PACKAGE).joinpath("default.toml").read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise ConfigError(
            f"the packaged defaults ({DEFAULTS_PACKAGE}) are missing; reinstall peppol-migrate ({exc})"
        ) from None


def starter_config_text() -> str:
    """A commented config file: every setting at its default, commented out, with its meaning.

    Built from the packaged ``default.toml`` so the two never drift apart; as written it
    changes nothing, and uncommenting a line changes one setting.
    """
    lines = [
        "# peppol-migrate configuration (written by `peppol-migrate config init`).",
        "# Every setting is listed at its default, commented out: uncomment a line to change it.",
        f"# Found by, first wins: --config FILE, {CONFIG_ENV}, ./{CONFIG_FILE_NAME},",
        f"# $XDG_CONFIG_HOME/{USER_CONFIG.as_posix()} (default ~/.config/{USER_CONFIG.as_posix()}).",
        "# Relative paths here (the SQLite file of database.url, handoff.outbox_dir, profiles.dir)",
        "# are relative to this file's folder. PEPPOL_MIGRATE_<SECTION>__<KEY> overrides a value.",
        "# Secrets never go here: set PEPPOL_MIGRATE_PSB__CLIENT_SECRET, PEPPOL_MIGRATE_PSB__PASSWORD,",
        "# PEPPOL_MIGRATE_PSB__SUBSCRIPTION_KEY and PEPPOL_MIGRATE_KEYS__ENCRYPTION_KEY in the environment",
        "# (or the same name + _FILE naming a file that holds it).",
        "# `peppol-migrate config show` prints the effective settings and where each came from.",
    ]
    in_body = False
    for line in packaged_defaults_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            in_body = True
            lines.extend(["", line])
        elif not in_body or not stripped:
            continue  # the file's own preamble is about the file, not about a starter
        elif stripped.startswith("#"):
            lines.append(line)
        else:
            lines.append("# " + line)
    return "\n".join(lines) + "\n"


# --- reading values -----------------------------------------------------------------------------


def _sections() -> dict[str, type[Any]]:
    return {f.name: typing.get_type_hints(Settings)[f.name] for f in dataclasses.fields(Settings)}


def _hints() -> dict[str, dict[str, Any]]:
    return {name: typing.get_type_hints(cls) for name, cls in _sections().items()}


_USERINFO = re.compile(r"^([^:@/\s]*):[^@\s]*@")


def _shown(section: str, key: str, value: Any) -> str:
    """A value as an error may print it: never a secret, never a URL's password."""
    if (section, key) in SECRET_KEYS:
        return "(a secret value)"
    if isinstance(value, str) and "://" in value:
        return repr(mask_url(value))
    if isinstance(value, str) and "@" in value:  # a URL without its scheme may still carry user:password@
        return repr(_USERINFO.sub(r"\1:***@", value))
    return repr(value)


def _bad(section: str, key: str, value: Any, source: Source, allowed: str) -> ConfigError:
    setting = f"{section}.{key}"
    return ConfigError(f"{setting} = {_shown(section, key, value)} (from {source.describe(setting)}): {allowed}")


def _coerce(value: Any, kind: Any, section: str, key: str, source: Source) -> Any:
    """Turn a TOML or environment value into the field's type, or say what is wrong and where."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
            return value.strip().lower() in {"1", "true", "yes", "on"}
        raise _bad(section, key, value, source, "expected true or false (or 1/0, yes/no, on/off)")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
            return int(value)
        raise _bad(section, key, value, source, "expected a whole number")
    if kind is float:
        if isinstance(value, bool):
            raise _bad(section, key, value, source, "expected a number")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise _bad(section, key, value, source, "expected a number") from None
        if not math.isfinite(number):
            raise _bad(section, key, value, source, "expected a finite number (not NaN or infinity)")
        return number
    if kind is str:
        if not isinstance(value, str):
            raise _bad(section, key, value, source, "expected text (a quoted string)")
        return value
    if typing.get_origin(kind) is tuple:
        items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(v, str) for v in items):
            raise _bad(section, key, value, source, "expected a list of text")
        return tuple(items)
    raise ConfigError(f"{section}.{key}: unsupported setting type {kind!r}")  # pragma: no cover


def _read_file(choice: ConfigChoice) -> dict[str, Any]:
    try:
        with choice.path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {choice.path} (from {choice.found_by}) does not exist") from None
    except OSError as exc:
        raise ConfigError(
            f"config file {choice.path} (from {choice.found_by}) cannot be read: {exc.strerror}"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {choice.path} is not valid TOML: {exc}") from None


def _suggest(word: str, choices: list[str], prefix: str = "") -> str:
    """``; did you mean X?`` for the closest choice, or nothing when none is close."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.7)
    return f"; did you mean {prefix}{close[0]}?" if close else ""


def _resolve_file_path(section: str, key: str, value: Any, base: Path) -> Any:
    """A relative path in a config file, made absolute against the file's folder."""
    if not isinstance(value, str) or not value.strip():
        return value
    if (section, key) == ("database", "url"):
        return sqlite_url_against(value, base)
    if (section, key) in PATH_SETTINGS:
        return str(_absolute(Path(value).expanduser(), base))
    return value


def sqlite_url_against(url: str, base: Path) -> str:
    """``sqlite:///rel.db`` made ``sqlite:////base/rel.db``; other URLs unchanged.

    In-memory databases and ``file:`` URIs are left alone, and so is a query string.
    """
    m = re.fullmatch(r"(sqlite(?:\+\w+)?:///)([^?]*)(\?.*)?", url, flags=re.DOTALL)
    if not m:
        return url
    prefix, path, query = m.group(1), m.group(2), m.group(3) or ""
    if not path or path == ":memory:" or path.startswith("file:"):
        return url
    return prefix + str(_absolute(Path(path).expanduser(), base)) + query


def _file_values(
    choice: ConfigChoice,
    hints: dict[str, dict[str, Any]],
    values: dict[str, dict[str, Any]],
    sources: dict[str, Source],
) -> None:
    data = _read_file(choice)
    path, base = choice.path, choice.path.parent
    keys_by_name = {key: section for section in hints for key in hints[section]}
    for section, body in data.items():
        if section not in values:
            hint = _suggest(section, list(values))
            raise ConfigError(f"{path}: unknown section [{section}]{hint} (known: {', '.join(values)})")
        if not isinstance(body, dict):
            raise ConfigError(f"{path}: [{section}] must be a table")
        for key, value in body.items():
            setting = f"{section}.{key}"
            if key not in hints[section]:
                hint = _suggest(key, list(hints[section]))
                if not hint and key in keys_by_name:
                    hint = f"; did you mean [{keys_by_name[key]}] {key}?"
                raise ConfigError(
                    f"{path}: {setting} is not a setting{hint} (known in [{section}]: {', '.join(hints[section])})"
                )
            if (section, key) in SECRET_KEYS:
                raise ConfigError(
                    f"{path}: {setting} is a secret: set {ENV_PREFIX}{section.upper()}__{key.upper()} in the "
                    "environment instead of writing it in a file"
                )
            source = Source("file", str(path))
            coerced = _coerce(value, hints[section][key], section, key, source)
            values[section][key] = _resolve_file_path(section, key, coerced, base)
            sources[setting] = source


def env_names() -> dict[str, tuple[str, str] | None]:
    """Every variable name the loader reads -> its (section, key); CONFIG maps to None."""
    names: dict[str, tuple[str, str] | None] = {CONFIG_ENV: None}
    for section, body in _hints().items():
        for key in body:
            names[f"{ENV_PREFIX}{section.upper()}__{key.upper()}"] = (section, key)
            if (section, key) in SECRET_KEYS:
                names[f"{ENV_PREFIX}{section.upper()}__{key.upper()}_FILE"] = (section, key)
    return names


def _env_values(
    env: Mapping[str, str],
    hints: dict[str, dict[str, Any]],
    values: dict[str, dict[str, Any]],
    sources: dict[str, Source],
) -> None:
    known = env_names()
    suffixes = [name[len(ENV_PREFIX) :] for name in known]
    for name in sorted(env):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        upper = name.upper()
        if upper not in known:
            # Compared without the common prefix, which would make every name look close.
            hint = _suggest(upper[len(ENV_PREFIX) :], suffixes, prefix=ENV_PREFIX)
            if "__" in upper:
                # Shaped like a setting: a typo here must not silently leave a value at its default.
                raise ConfigError(
                    f"{name} is not a setting{hint} (`peppol-migrate config init` writes a file listing every setting)"
                )
            log.warning("%s is not a setting and is ignored%s", name, hint)
            continue
        target = known[upper]
        if target is None:
            continue  # PEPPOL_MIGRATE_CONFIG, read by the discovery
        section, key = target
        raw = env[name]
        if upper.endswith("_FILE") and (section, key) in SECRET_KEYS:
            try:
                raw = Path(raw).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"{name}: cannot read the secret file: {exc.strerror}") from None
        source = Source("variable", name)
        values[section][key] = _coerce(raw, hints[section][key], section, key, source)
        sources[f"{section}.{key}"] = source


def _apply_environment(values: dict[str, dict[str, Any]], sources: dict[str, Source]) -> None:
    """Fill the URLs and SML zone of ``psb.environment`` where nothing set them explicitly."""
    raw = values["psb"].get("environment", PsbSettings.environment)
    source = sources.get("psb.environment", DEFAULT_SOURCE)
    name = raw.strip().lower() if isinstance(raw, str) else raw
    if name not in ENVIRONMENTS:
        raise _bad("psb", "environment", raw, source, f"must be one of {', '.join(ENVIRONMENTS)}")
    values["psb"]["environment"] = name
    others = {value for other, preset in ENVIRONMENTS.items() if other != name for value in preset.values() if value}
    for (section, key), value in ENVIRONMENTS[name].items():
        setting = f"{section}.{key}"
        if setting not in sources:
            values[section][key] = value
            sources[setting] = Source("environment-preset", name)
        elif values[section][key] in others:
            # Allowed (an explicit value wins) but most likely a copied file: say so.
            log.warning(
                "%s is the other environment's value %r (from %s) while psb.environment = %s",
                setting,
                values[section][key],
                sources[setting].describe(setting),
                name,
            )


def resolve_settings(
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> LoadedSettings:
    """Settings with the source of every value: what ``config show`` prints.

    ``env`` None means the process: ``os.environ`` and, for discovery, the working directory.
    A caller passing its own ``env`` (tests, the demo) gets only what that mapping and
    ``config_file`` name, plus ``./peppol-migrate.toml`` of ``cwd`` when it passes one.
    """
    if env is None:
        env = os.environ
        cwd = Path.cwd() if cwd is None else cwd
    hints = _hints()
    values: dict[str, dict[str, Any]] = {name: {} for name in hints}
    sources: dict[str, Source] = {}

    candidates = config_candidates(config_file, env, cwd)
    choice = discover_config(config_file, env, cwd)
    if choice is not None:
        _file_values(choice, hints, values, sources)
    _env_values(env, hints, values, sources)
    _apply_environment(values, sources)

    built = {name: cls(**values[name]) for name, cls in _sections().items()}
    settings = Settings(**built)
    full_sources = {
        f"{section}.{key}": sources.get(f"{section}.{key}", DEFAULT_SOURCE)
        for section in hints
        for key in hints[section]
    }
    _check(settings, full_sources)
    return LoadedSettings(
        settings=settings,
        sources=full_sources,
        config=choice,
        searched=tuple(f"{path} ({found_by})" for path, found_by, _ in candidates),
    )


def load_settings(
    config_file: str | Path | None = None, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> Settings:
    """Build the settings from defaults, the discovered TOML file and the environment."""
    return resolve_settings(config_file, env, cwd).settings


# --- checks -----------------------------------------------------------------------------------


def _is_http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


_AT_LEAST_ONE = "must be a whole number of at least 1"
_POSITIVE = "must be a number greater than 0"
_HTTP_URL = "must be an http:// or https:// URL with a host"

# (section, key) -> (is the value allowed, what is allowed). Types are checked when read;
# these are the ranges and shapes. Every setting not listed takes any value of its type.
_RULES: dict[tuple[str, str], tuple[typing.Callable[[Any], bool], str]] = {
    ("database", "url"): (
        lambda v: bool(re.match(r"[A-Za-z][A-Za-z0-9+.\-]*://", v)),
        "must be a SQLAlchemy URL, e.g. sqlite:///peppol-migrate.db or postgresql+psycopg://user@host/db",
    ),
    ("psb", "environment"): (lambda v: v in ENVIRONMENTS, f"must be one of {', '.join(ENVIRONMENTS)}"),
    ("psb", "base_url"): (_is_http_url, _HTTP_URL),
    ("psb", "identity_url"): (_is_http_url, _HTTP_URL),
    ("psb", "access_point_url"): (_is_http_url, _HTTP_URL),
    ("psb", "timeout_s"): (lambda v: v > 0, _POSITIVE),
    ("psb", "max_rps"): (lambda v: v >= 0, "must be 0 (no limit) or a positive number"),
    ("worker", "concurrency"): (lambda v: v >= 1, _AT_LEAST_ONE),
    ("worker", "poll_interval_s"): (lambda v: v > 0, _POSITIVE),
    ("worker", "lease_s"): (lambda v: v > 0, _POSITIVE),
    ("retry", "max_attempts"): (lambda v: v >= 1, _AT_LEAST_ONE),
    ("retry", "base_s"): (lambda v: v > 0, _POSITIVE),
    ("retry", "max_s"): (lambda v: v > 0, _POSITIVE),
    ("takeover", "poll_s"): (lambda v: v > 0, _POSITIVE),
    ("takeover", "poll_max_s"): (lambda v: v > 0, _POSITIVE),
    ("takeover", "deadline_h"): (lambda v: v > 0, _POSITIVE),
    ("keys", "ttl_h"): (lambda v: v > 0, _POSITIVE),
    ("handoff", "mode"): (lambda v: v in HANDOFF_MODES, f"must be one of {', '.join(HANDOFF_MODES)}"),
    ("handoff", "outbox_dir"): (lambda v: bool(v.strip()), "must name a folder"),
    ("handoff", "endpoint"): (lambda v: not v or _is_http_url(v), _HTTP_URL + " (or empty)"),
    ("outbound", "users"): (lambda v: all(u.strip() for u in v), "must be a list of non-empty user names"),
    ("profiles", "default"): (
        lambda v: bool(re.fullmatch(r"[A-Za-z0-9_-]+", v)),
        "must be a profile name (letters, digits, - and _)",
    ),
    ("verify", "sml_zone"): (
        lambda v: bool(re.fullmatch(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+\.?", v.strip())),
        "must be a DNS name, e.g. participant.sml.prod.tech.peppol.org",
    ),
    ("verify", "timeout_s"): (lambda v: v > 0, _POSITIVE),
}


def _number_ok(value: Any) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


def _check(settings: Settings, sources: Mapping[str, Source] | None = None) -> None:
    """Ranges, shapes and combinations; each error names the setting, its source and what is allowed."""

    def source(setting: str) -> Source:
        return (sources or {}).get(setting, Source("override") if sources is None else DEFAULT_SOURCE)

    psb = settings.psb
    if psb.environment == "production" and not psb.access_point_url:
        raise ConfigError(
            "psb.access_point_url is not set (psb.environment = production, from "
            f"{source('psb.environment').describe('psb.environment')}): eConnect's production access point URL "
            "is not built in; set psb.access_point_url to the URL eConnect's production delivery options show"
        )
    for section_field in dataclasses.fields(settings):
        section = section_field.name
        body = getattr(settings, section)
        for f in dataclasses.fields(body):
            value = getattr(body, f.name)
            setting = f"{section}.{f.name}"
            if not _number_ok(value):
                raise _bad(section, f.name, value, source(setting), "expected a finite number (not NaN or infinity)")
            rule = _RULES.get((section, f.name))
            if rule is not None and not rule[0](value):
                raise _bad(section, f.name, value, source(setting), rule[1])
    if settings.handoff.mode == "https" and not settings.handoff.endpoint:
        raise ConfigError(
            f"handoff.mode is https (from {source('handoff.mode').describe('handoff.mode')}) "
            "but handoff.endpoint is empty: set it to the new provider's URL"
        )
    if settings.verify.peppol_network and not settings.verify.econnect_smp_host.strip():
        raise ConfigError(
            "verify.peppol_network is on (from "
            f"{source('verify.peppol_network').describe('verify.peppol_network')}): "
            "set verify.econnect_smp_host to eConnect's SMP host"
        )


def with_overrides(settings: Settings, **sections: Mapping[str, Any]) -> Settings:
    """A copy with some values replaced, e.g. ``with_overrides(s, worker={"concurrency": 4})``.

    Values are taken as given (``psb.environment`` fills nothing in here); they are checked.
    """
    changed = {name: dataclasses.replace(getattr(settings, name), **dict(body)) for name, body in sections.items()}
    result = dataclasses.replace(settings, **changed)
    _check(result)
    return result


# --- showing ----------------------------------------------------------------------------------


def mask_url(url: str) -> str:
    """A URL with its password (``user:password@``) replaced by ``***``; other text unchanged."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def shown_value(section: str, key: str, value: Any) -> Any:
    """A value as ``config show`` prints it: secrets as set/not set, URLs without passwords.

    The handoff endpoint's query is hidden too: a receiving provider may put a token there.
    """
    if (section, key) in SECRET_KEYS:
        return "(set)" if value else "(not set)"
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, str) and "://" in value:
        masked = mask_url(value)
        if (section, key) == ("handoff", "endpoint") and "?" in masked:
            masked = masked.partition("?")[0] + "?***"
        return masked
    return value


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
