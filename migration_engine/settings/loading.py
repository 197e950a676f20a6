"""Building the settings: defaults, the environment's presets, one TOML file, ``PEPPOL_MIGRATE_*``."""

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
from pathlib import Path
from typing import Any

from migration_engine.errors import ConfigError
from migration_engine.settings.checks import check
from migration_engine.settings.discovery import absolute_against, config_candidates, discover_config
from migration_engine.settings.model import (
    CONFIG_ENV,
    DEFAULT_SOURCE,
    ENV_PREFIX,
    ENVIRONMENTS,
    PATH_SETTINGS,
    SECRET_KEYS,
    ConfigChoice,
    LoadedSettings,
    PsbSettings,
    Settings,
    Source,
)
from migration_engine.settings.showing import bad_value

log = logging.getLogger("migration_engine.settings")


# --- reading values -----------------------------------------------------------------------------


def _sections() -> dict[str, type[Any]]:
    return {f.name: typing.get_type_hints(Settings)[f.name] for f in dataclasses.fields(Settings)}


def _hints() -> dict[str, dict[str, Any]]:
    return {name: typing.get_type_hints(cls) for name, cls in _sections().items()}




def _coerce(value: Any, kind: Any, section: str, key: str, source: Source) -> Any:
    """Turn a TOML or environment value into the field's type, or say what is wrong and where."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
            return value.strip().lower() in {"1", "true", "yes", "on"}
        raise bad_value(section, key, value, source, "expected true or false (or 1/0, yes/no, on/off)")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
            return int(value)
        raise bad_value(section, key, value, source, "expected a whole number")
    if kind is float:
        if isinstance(value, bool):
            raise bad_value(section, key, value, source, "expected a number")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise bad_value(section, key, value, source, "expected a number") from None
        if not math.isfinite(number):
            raise bad_value(section, key, value, source, "expected a finite number (not NaN or infinity)")
        return number
    if kind is str:
        if not isinstance(value, str):
            raise bad_value(section, key, value, source, "expected text (a quoted string)")
        return value
    if typing.get_origin(kind) is tuple:
        items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(v, str) for v in items):
            raise bad_value(section, key, value, source, "expected a list of text")
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
    except UnicodeDecodeError as exc:  # TOML is UTF-8; tomllib decodes before it parses
        raise ConfigError(
            f"config file {choice.path} (from {choice.found_by}) is not UTF-8 text "
            f"(byte 0x{exc.object[exc.start]:02x} at position {exc.start})"
        ) from None


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
        return str(absolute_against(Path(value).expanduser(), base))
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
    return prefix + str(absolute_against(Path(path).expanduser(), base)) + query


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
            except UnicodeDecodeError as exc:  # the secret's bytes are never shown
                raise ConfigError(f"{name}: the secret file is not UTF-8 text (at byte {exc.start})") from None
        source = Source("variable", name)
        values[section][key] = _coerce(raw, hints[section][key], section, key, source)
        sources[f"{section}.{key}"] = source


def _apply_environment(values: dict[str, dict[str, Any]], sources: dict[str, Source]) -> None:
    """Fill the URLs and SML zone of ``psb.environment`` where nothing set them explicitly."""
    raw = values["psb"].get("environment", PsbSettings.environment)
    source = sources.get("psb.environment", DEFAULT_SOURCE)
    name = raw.strip().lower() if isinstance(raw, str) else raw
    if name not in ENVIRONMENTS:
        raise bad_value("psb", "environment", raw, source, f"must be one of {', '.join(ENVIRONMENTS)}")
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
    check(settings, full_sources)
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
