"""`audit verify`, `audit anchor`, `audit export`: the audit trail for operators and auditors.

verify   every migration's keyed chain, and its row against it; with ``--anchor FILE`` also
         what an earlier anchor recorded (deleted migrations, truncated or rewritten chains)
anchor   the chain heads now, HMAC'd, as JSON (a 0600 file, or standard output)
export   every event as a JSON line with its party, direction and batch (no key: events hold none)

Exit codes: 0 intact, 1 broken (each broken migration named once), 2 bad input or no audit key.
Imports only argparse here; the store is loaded when a command runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from migration_engine.errors import InputError

if TYPE_CHECKING:
    from migration_engine.engine.runtime import Runtime
    from migration_engine.store import AuditAnchor, BrokenLink, Store


def add_parsers(audit: Any) -> None:
    """The `audit` subcommands, on the `audit` subparsers object."""
    av = audit.add_parser("verify", help="check every migration's hash chain, and its row against it")
    av.add_argument("--json", action="store_true")
    av.add_argument(
        "--anchor",
        metavar="FILE",
        help="an anchor `audit anchor` wrote: also find migrations deleted and chains cut or rewritten since",
    )
    an = audit.add_parser("anchor", help="write every migration's chain head, HMAC'd, as JSON (keep it off the host)")
    an.add_argument("--output", metavar="FILE", help="a new file, written 0600 (default: standard output)")
    ex = audit.add_parser("export", help="every audit event as a JSON line, with its party, direction and batch")
    ex.add_argument("--output", metavar="FILE", help="a file, written 0600 (default: standard output)")
    ex.add_argument("--batch", metavar="NAME", help="only the migrations of this batch")


@contextmanager
def _output(path: str | None, *, new: bool) -> Iterator[IO[str]]:
    """Standard output, or ``path`` opened 0600 (``new``: refuse an existing file)."""
    if path is None:
        yield sys.stdout
        return
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if new else os.O_TRUNC)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise InputError(f"--output {path}: the file exists; an anchor is never overwritten, name a new file") from None
    except OSError as exc:
        raise InputError(f"--output {path}: cannot write it: {exc.strerror}") from None
    os.fchmod(fd, 0o600)  # an existing export file keeps no wider mode
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        yield fh


def _read_anchor(store: Store, path: str) -> AuditAnchor:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"--anchor {path}: cannot read it: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(f"--anchor {path}: not UTF-8 text, so not an anchor") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InputError(f"--anchor {path}: not JSON ({exc})") from None
    return store.read_audit_anchor(data, source=f"--anchor {path}")


def _print_broken(broken: list[BrokenLink]) -> None:
    for b in broken:
        print(f"BROKEN migration {b.migration_id} ({b.party_id}) at event {b.seq}: {b.reason}")


def _wrong_key_hint(broken: list[BrokenLink], store: Store) -> None:
    """Every chain failing at its first event's hash most likely means another audit key."""
    first = broken and all(b.seq == 1 and "does not match its hash" in b.reason for b in broken)
    if first and len(broken) == sum(n for _, _, n in store.counts()):
        print(
            "hint: every chain fails at its first event: is PEPPOL_MIGRATE_AUDIT__KEY the key this "
            "trail was written with?",
            file=sys.stderr,
        )


def verify(rt: Runtime, args: argparse.Namespace) -> int:
    store = rt.checked_store()
    store.require_audit_key()
    anchor = _read_anchor(store, args.anchor) if args.anchor else None
    broken = store.verify_audit(anchor=anchor)
    if args.json:
        out: dict[str, Any] = {"ok": not broken, "broken": [b.__dict__ for b in broken]}
        if anchor is not None:
            out["anchor"] = {"written_at": anchor.written_at.isoformat(), "migrations": len(anchor.heads)}
        print(json.dumps(out, indent=2, ensure_ascii=False))
    elif broken:
        _print_broken(broken)
        _wrong_key_hint(broken, store)
    else:
        also = ""
        if anchor is not None:
            when = anchor.written_at.isoformat(timespec="seconds")
            also = f"; none of the {len(anchor.heads)} migrations of the anchor of {when} is missing or rewritten"
        print(f"audit trail intact: every hash chain verifies and every row matches its chain{also}")
    if broken:  # an alert (engine/alerts.py): the worker's next alerts run sends it
        from migration_engine.engine.alerts import audit_verify_failed

        first = broken[0]
        audit_verify_failed(
            store, broken=len({b.migration_id for b in broken}), at=rt.clock.now(), by="peppol-migrate audit verify",
            first=f"migration {first.migration_id} ({first.party_id}) at event {first.seq}",
        )
    return 1 if broken else 0


def anchor(rt: Runtime, args: argparse.Namespace) -> int:
    store = rt.checked_store()
    store.require_audit_key()
    taken, broken = store.take_audit_anchor()
    if taken is None:
        print("error: no anchor written: the audit trail does not verify", file=sys.stderr)
        _print_broken(broken)
        return 1
    with _output(args.output, new=True) as fh:
        json.dump(store.audit_anchor_json(taken), fh, indent=1, ensure_ascii=False)
        fh.write("\n")
    if args.output:
        when = taken.written_at.isoformat(timespec="seconds")
        print(f"anchored {len(taken.heads)} migrations at {when} in {args.output}")
    return 0


def export(rt: Runtime, args: argparse.Namespace) -> int:
    store = rt.checked_store()
    if args.batch is not None and store.batch_info(args.batch) is None:
        raise InputError(f"there is no batch named {args.batch!r}")
    n = 0
    with _output(args.output, new=False) as fh:
        for event in store.export_audit(batch_name=args.batch):
            fh.write(json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n")
            n += 1
    if args.output:
        print(f"exported {n} audit events to {args.output}")
    return 0


COMMANDS = {"verify": verify, "anchor": anchor, "export": export}


def run(rt: Runtime, args: argparse.Namespace) -> int:
    return COMMANDS[args.audit_command](rt, args)
