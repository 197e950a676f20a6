"""Which config file counts (``--config``, ``PEPPOL_MIGRATE_CONFIG``, ``./peppol-migrate.toml``, the
XDG config folder), and the packaged defaults and starter file."""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from migration_engine.errors import ConfigError
from migration_engine.settings.model import CONFIG_ENV, CONFIG_FILE_NAME, DEFAULTS_PACKAGE, USER_CONFIG, ConfigChoice

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
        found.append((absolute_against(Path(explicit).expanduser(), base), "--config", True))
    named = env.get(CONFIG_ENV, "").strip()
    if named:
        found.append((absolute_against(Path(named).expanduser(), base), CONFIG_ENV, True))
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


def absolute_against(path: Path, base: Path) -> Path:
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
        "# PEPPOL_MIGRATE_PSB__SUBSCRIPTION_KEY, PEPPOL_MIGRATE_KEYS__ENCRYPTION_KEY and PEPPOL_MIGRATE_AUDIT__KEY",
        "# in the environment",
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
