"""`peppol-migrate keys rotate`: reseal every stored migration key under a new key-encryption key.

Parses, calls ``backoffice.key_rotation`` and prints; docs/operations.md ("Keys at rest")
says when and how. Exit codes: 0 done, 1 done but some keys did not open (listed), 2 bad
input (a missing, weak or wrong key, a worker still running).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migration_engine.errors import InputError
from migration_engine.keys import KEY_SETTING, NEW_KEY_SETTING

if TYPE_CHECKING:
    from migration_engine.engine.runtime import Runtime


def add_parser(keys: Any) -> None:
    """Add `rotate` to the `keys` subcommands."""
    rot = keys.add_parser(
        "rotate",
        help="reseal every stored migration key under a new key-encryption key",
        description=f"The old key is {KEY_SETTING}; the new one {NEW_KEY_SETTING} (or _FILE, or --new-key-file). "
        "Stop every worker first. Keys are resealed in batches, each audited per migration; run it again "
        f"after an interruption to finish. At the end the old key opens nothing: set {KEY_SETTING} to the new key.",
    )
    rot.add_argument("--new-key-file", metavar="FILE", help=f"read the new key from FILE instead of {NEW_KEY_SETTING}")
    rot.add_argument("--batch-size", type=int, default=500, metavar="N", help="keys per transaction (default 500)")
    rot.add_argument("--actor", default=None, help="who rotates (default: the OS user)")
    rot.add_argument("--json", action="store_true")


def _new_key(args: argparse.Namespace, configured: str) -> str:
    if not args.new_key_file:
        return configured
    path = Path(args.new_key_file)
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise InputError(f"--new-key-file {path}: cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:  # the key's bytes are never shown
        raise InputError(f"--new-key-file {path}: not UTF-8 text (at byte {exc.start})") from None


def run(rt: Runtime, args: argparse.Namespace, actor: str) -> int:
    from migration_engine.backoffice.key_rotation import rotate_keys

    result = rotate_keys(
        rt.checked_store(),
        old_secret=rt.settings.keys.encryption_key,
        new_secret=_new_key(args, rt.settings.keys.new_encryption_key),
        actor=actor,
        batch_size=args.batch_size,
    )
    if args.json:
        print(json.dumps(result.as_dict(), indent=2, ensure_ascii=False))
    else:
        print(
            f"resealed {result.resealed} key(s) under key id {result.new_key_id} ({result.already} already were); "
            f"key id {result.old_key_id} is retired: set {KEY_SETTING} to the new key now"
        )
    for migration_id, party_id, why in result.unreadable:
        print(f"  not resealed: migration {migration_id} ({party_id}): {why}", file=sys.stderr)
    return 1 if result.unreadable else 0
