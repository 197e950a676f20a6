"""``peppol-migrate config show [--json]`` and ``config init [PATH] [--force]``.

``show`` prints the effective settings with where each value came from (the default,
``psb.environment``, the config file, or an environment variable) and which config file the
discovery chose: the first thing to run when a setting is not what an operator expected.
Secrets are never printed, only whether they are set; a URL's password is masked.

``init`` writes a starter config file: every setting at its default, commented out, with its
meaning. It refuses to overwrite a file unless ``--force`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migration_engine.errors import InputError

if TYPE_CHECKING:
    from migration_engine.settings import LoadedSettings

# Named here, not imported: building the CLI's parser loads no settings code (the command
# does, when it runs). A test keeps it equal to settings.CONFIG_FILE_NAME.
CONFIG_FILE_NAME = "peppol-migrate.toml"


def add_parser(sub: Any) -> None:
    """Register the ``config`` subcommand (``show``, ``init``) on the CLI's subparsers."""
    p = sub.add_parser("config", help="show the effective settings, or write a starter config file")
    actions = p.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    show = actions.add_parser("show", help="every setting, its value and where it came from (secrets masked)")
    show.add_argument("--json", action="store_true")
    init = actions.add_parser("init", help=f"write a commented starter config file (default ./{CONFIG_FILE_NAME})")
    init.add_argument(
        "path", nargs="?", default=CONFIG_FILE_NAME, help=f"where to write it (default {CONFIG_FILE_NAME})"
    )
    init.add_argument("--force", action="store_true", help="overwrite an existing file")


def run(args: argparse.Namespace, *, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> int:
    """Run ``config show`` or ``config init``; ``env``/``cwd`` default to the process's own."""
    from migration_engine.settings import resolve_settings

    if args.config_command == "show":
        loaded = resolve_settings(getattr(args, "config", None), env, cwd)
        if args.json:
            print(json.dumps(show_data(loaded), indent=2, ensure_ascii=False))
        else:
            print("\n".join(show_lines(loaded)))
        return 0
    target = Path(args.path).expanduser()
    if cwd is not None and not target.is_absolute():
        target = cwd / target
    path = write_starter(target, force=args.force)
    print(f"wrote {path.absolute()}: every setting at its default, commented out; uncomment what you need")
    print("check the result with: peppol-migrate config show")
    return 0


def show_data(loaded: LoadedSettings) -> dict[str, Any]:
    """What ``config show --json`` prints: the chosen file and each setting's value and source."""
    from migration_engine.settings import as_dict, shown_value

    settings: dict[str, dict[str, Any]] = {}
    for section, body in as_dict(loaded.settings, mask_secrets=False).items():
        settings[section] = {}
        for key, value in body.items():
            source = loaded.sources[f"{section}.{key}"]
            settings[section][key] = {
                "value": shown_value(section, key, value),
                "source": str(source),
                "kind": source.kind,
            }
    return {
        "config_file": str(loaded.config.path) if loaded.config else None,
        "found_by": loaded.config.found_by if loaded.config else None,
        "searched": list(loaded.searched),
        "settings": settings,
    }


def show_lines(loaded: LoadedSettings) -> list[str]:
    """``config show`` as text: TOML-like lines with the source as a trailing comment.

    Secret lines are comments (``# client_secret: (set) ...``), so the output pasted into a
    file is still valid and holds no secret.
    """
    from migration_engine.settings import SECRET_KEYS, as_dict, shown_value

    if loaded.config:
        lines = [f"# config file: {loaded.config.path} (found by {loaded.config.found_by})"]
    else:
        lines = ["# config file: none; looked for, in order:"]
        lines += [f"#   {entry}" for entry in loaded.searched] or ["#   (nothing to look for)"]
    for section, body in as_dict(loaded.settings, mask_secrets=False).items():
        lines += ["", f"[{section}]"]
        rows = []
        for key, value in body.items():
            source = str(loaded.sources[f"{section}.{key}"])
            if (section, key) == ("profiles", "dir") and not value:
                source += " (empty: the profiles shipped with peppol-migrate)"
            shown = shown_value(section, key, value)
            if (section, key) in SECRET_KEYS:
                rows.append((f"# {key}: {shown}", source))
            else:
                rows.append((f"{key} = {json.dumps(shown, ensure_ascii=False)}", source))
        width = max(len(text) for text, _ in rows)
        lines += [f"{text:<{width}}  # {source}" for text, source in rows]
    return lines


def write_starter(path: Path, *, force: bool = False) -> Path:
    """Write the starter file at ``path`` (parents created); an existing file only with ``force``."""
    from migration_engine.settings import starter_config_text

    if path.is_dir():
        raise InputError(f"{path} is a folder: give a file name, e.g. {path / CONFIG_FILE_NAME}")
    if path.exists() and not force:
        raise InputError(f"{path} exists already; use --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | (0 if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o644)
    except FileExistsError:
        raise InputError(f"{path} exists already; use --force to overwrite it") from None
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(starter_config_text())
    return path
