"""`peppol-migrate demo`: the embedded default, end to end, in a temporary folder.

Starts the sandbox on a free loopback port, registers parties at eConnect and at another
provider, writes a mixed batch file (both directions; some inbound keys wrong), imports it
into SQLite, runs the worker until idle with live progress, and prints the summary. The
engine is driven exactly as a user's installation would be: through settings pointing
``psb.base_url`` and ``psb.identity_url`` at the sandbox.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from migration_engine.backoffice import overview
from migration_engine.backoffice.importer import import_file
from migration_engine.engine.runtime import Runtime
from migration_engine.keys import generate_key
from migration_engine.machine import Direction, State
from migration_engine.sandbox import SandboxConfig, SandboxServer
from migration_engine.sandbox.client_env import client_env
from migration_engine.settings import load_settings

PROVIDER = "provider-b"

def _be_number(seq: int) -> str:
    """A Belgian enterprise number (0208) with a valid mod-97 check."""
    first8 = f"0{seq:07d}"
    return f"{first8}{97 - int(first8) % 97:02d}"


def demo_parties(count: int) -> list[tuple[str, Direction]]:
    """Half inbound, half outbound; mostly KvK numbers, every tenth Belgian (with checksum)."""
    parties = []
    for i in range(count):
        direction = Direction.TO_ECONNECT if i % 2 == 0 else Direction.FROM_ECONNECT
        party = f"0208:{_be_number(400000 + i)}" if i % 10 == 9 else f"0106:{70000000 + i:08d}"
        parties.append((party, direction))
    return parties


def demo_env(folder: Path, sandbox_url: str) -> dict[str, str]:
    """The demo's settings: the packaged profiles, a SQLite file in the demo's folder."""
    return client_env(sandbox_url, db_url=f"sqlite:///{folder / 'demo.db'}", concurrency=16)


def run_demo(*, parties: int = 240, invalid_keys: int | None = None, keep: bool = False, as_json: bool = False) -> int:
    if parties < 2:
        raise SystemExit("demo: --parties must be at least 2")
    folder = Path(tempfile.mkdtemp(prefix="peppol-migrate-demo-"))
    started = time.monotonic()
    config = SandboxConfig(latency_ms=2.0, propagation_delay_s=0.3, takeover_delay_s=0.3)
    try:
        with SandboxServer(config) as sandbox:
            plan = demo_parties(parties)
            inbound = [p for p, d in plan if d is Direction.TO_ECONNECT]
            n_wrong = min(len(inbound), max(1, len(inbound) // 12) if invalid_keys is None else invalid_keys)
            wrong = set(inbound[:: max(1, len(inbound) // max(1, n_wrong))][:n_wrong])
            batch = folder / "demo-batch.csv"
            with batch.open("w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh)
                writer.writerow(["party_id", "direction", "migration_key", "profile", "name", "new_provider"])
                for i, (party, direction) in enumerate(plan):
                    if direction is Direction.TO_ECONNECT:
                        sandbox.model.register(party, PROVIDER)
                        key = sandbox.model.provider_prepare(PROVIDER, party)
                        if party in wrong:
                            key = generate_key()  # well-formed, but not the key the SML holds
                        writer.writerow([party, direction.value, key, "default", f"Demo Customer {i}", ""])
                    else:
                        sandbox.model.register(party, "econnect")
                        writer.writerow([party, direction.value, "", "", f"Demo Customer {i}", PROVIDER])
            os.chmod(batch, 0o600)

            settings = load_settings(env=demo_env(folder, sandbox.url))
            rt = Runtime(settings)
            try:
                rt.store.upgrade()
                imported = import_file(rt, path=batch, batch_name="demo", dry_run=False, actor="demo")
                print(
                    f"demo: sandbox at {sandbox.url}; imported {imported['rows']} parties "
                    f"({len(wrong)} inbound with a wrong key); running the worker until idle…",
                    file=sys.stderr,
                    flush=True,
                )
                worker = rt.worker()
                from migration_engine.cli.progress import ProgressDisplay
                from migration_engine.cli.serving import serving_switch_interval

                with serving_switch_interval(), ProgressDisplay(rt.store, batch_name="demo"):
                    worker.run(until_idle=True)
                summary = _summary(rt, wrong, time.monotonic() - started)
                if keep:
                    _write_issued_keys(folder, sandbox)
            finally:
                rt.close()
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
    _print(summary, folder if keep else None, as_json)
    return 0 if summary["ok"] else 1


def _summary(rt: Runtime, wrong: set[str], seconds: float) -> dict[str, Any]:
    store = rt.store
    status = overview.status(store, batch_name="demo", now=rt.clock.now())
    unexpected, rejected = [], []
    for record in store.list_migrations(batch_name="demo"):
        expected = State.KEY_REJECTED if record.party_id in wrong else State.COMPLETED
        if record.state is State.KEY_REJECTED:
            rejected.append({"party_id": record.party_id, "error": record.last_error})
        if record.state is not expected:
            unexpected.append(
                {
                    "party_id": record.party_id,
                    "state": record.state.value,
                    "expected": expected.value,
                    "error": record.last_error,
                }
            )
    broken = store.verify_audit()
    return {
        "ok": not unexpected and not broken,
        "seconds": round(seconds, 1),
        "status": status,
        "key_rejected": rejected,
        "unexpected": unexpected,
        "audit_intact": not broken,
    }


def _write_issued_keys(folder: Path, sandbox: SandboxServer) -> None:
    """With --keep: every key the sandbox's SML issued, for leak checks (mode 0600, test data)."""
    keys = sorted(sandbox.model.issued_keys())
    path = folder / "sandbox-issued-keys.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(keys, fh)


def _print(summary: dict[str, Any], folder: Path | None, as_json: bool) -> None:
    if as_json:
        print(json.dumps({**summary, "folder": str(folder) if folder else None}, indent=2, default=str))
        return
    status = summary["status"]
    print()
    print(f"demo finished in {summary['seconds']} s: {status['total']} parties, {status['completed']} completed")
    for direction, counts in status["by_direction"].items():
        print(f"  {direction:<14} " + "  ".join(f"{k}={v}" for k, v in counts.items() if v))
    if summary["key_rejected"]:
        print(f"  {len(summary['key_rejected'])} inbound key(s) rejected by the PSB, e.g.:")
        for item in summary["key_rejected"][:3]:
            print(f"    {item['party_id']}: {item['error']}")
    print(f"  audit trail: {'every hash chain verifies' if summary['audit_intact'] else 'BROKEN'}")
    for item in summary["unexpected"][:10]:
        print(f"  UNEXPECTED {item['party_id']}: {item['state']} (expected {item['expected']}) {item['error'] or ''}")
    if folder:
        print(f"  kept: {folder}")
