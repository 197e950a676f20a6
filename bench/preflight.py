"""Preflight: `peppol-migrate plan FILE --json` on 10,000 parties against the sandbox (DNS + SMP).

``python -m bench.preflight [--parties N] [--dns-per-s R] [--smp-per-s R] [--concurrency C]``
runs it alone; `make bench` (``python -m bench``) runs it after the other cases.

The sandbox runs in a child process of its own (``python -m bench.preflight --serve N``: it
registers the parties, prints its URL and DNS address, and serves until its standard input
closes), so its CPU does not share the plan's GIL. The parties: 7 in 10 at ``provider-b``,
whose SMP publishes one of six document-type mixes (a business card on the SMP for half of
them), 2 in 10 at eConnect, 1 in 10 registered nowhere; the Directory is off (DNS + SMP only).

The plan runs as the installed command does (``python -m migration_engine.cli``), so the
figures are the command's own: parties per second (wall clock, start to exit) and its peak
resident memory (``ru_maxrss`` of the child). The lookups' rate limits are stated with the
figures. At the default limits (``lookups.dns_per_s`` 50, ``lookups.smp_per_s`` 10 per SMP)
10,000 parties would take over three minutes on DNS alone and far longer on one SMP, so the
bench raises them explicitly (``--dns-per-s``, ``--smp-per-s``) and prints what the defaults
would have taken.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROVIDER = "provider-b"
CLI = [sys.executable, "-m", "migration_engine.cli"]
PROFILES = Path(__file__).parents[1] / "config" / "profiles"
MIXES = (
    ("invoices",),
    ("invoices", "orders"),
    ("invoice", "credit-note", "despatch-advice"),
    ("invoices", "invoiceResponse", "reviews"),
    ("order-only", "catalogue"),
    ("cii", "nlcius", "invoice-response"),
)
DEFAULT_PARTIES = 10_000
DNS_PER_S = 5000.0
SMP_PER_S = 5000.0
CONCURRENCY = 16


def party_id(i: int) -> str:
    return f"0106:{30_000_000 + i:08d}"


def owner(i: int) -> str | None:
    """Where party ``i`` is registered: provider-b (7 in 10), eConnect (2 in 10) or nowhere."""
    k = i % 10
    return None if k == 9 else ("econnect" if k >= 7 else PROVIDER)


# ---- the sandbox's child process -----------------------------------------------------------


def serve(parties: int) -> int:
    """Register the parties, print ``URL DNS-ADDRESS``, serve until standard input closes."""
    from migration_engine.peppol.snapshot import BusinessCardSeen
    from migration_engine.sandbox import SandboxConfig, SandboxServer
    from migration_engine.sandbox.catalog import document_type_ids
    from migration_engine.sandbox.publications import Publication

    mixes = [document_type_ids(m) for m in MIXES]
    with SandboxServer(SandboxConfig(call_log_limit=1000)) as sandbox:
        for i in range(parties):
            where = owner(i)
            if where is None:
                continue
            sandbox.model.register(party_id(i), where)
            if where == PROVIDER:
                card = BusinessCardSeen(name=f"Customer {i}", country_code="NL") if i % 2 else None
                sandbox.model.publish(party_id(i), Publication(mixes[i % len(mixes)], card, "smp"))
        print(sandbox.url, sandbox.dns_address, flush=True)
        sys.stdin.read()
    return 0


class Sandbox:
    def __init__(self, parties: int) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "bench.preflight", "--serve", str(parties)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).parents[1],
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().split()
        if len(line) != 2:
            self.stop()
            raise RuntimeError(f"the sandbox process did not start (said {line!r})")
        self.url, self.dns_address = line

    def stop(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()


# ---- the run ---------------------------------------------------------------------------------


def write_file(path: Path, parties: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["party_id", "direction", "current_provider"])
        for i in range(parties):
            inbound = owner(i) != "econnect" or i % 20 == 7  # a few eConnect parties inbound: already_econnect
            writer.writerow([party_id(i), "to-econnect" if inbound else "from-econnect", PROVIDER if inbound else ""])


def run(
    parties: int = DEFAULT_PARTIES,
    *,
    dns_per_s: float = DNS_PER_S,
    smp_per_s: float = SMP_PER_S,
    concurrency: int = CONCURRENCY,
    workdir: Path | None = None,
) -> dict[str, Any]:
    """One plan of ``parties`` parties; its figures, the limits it ran under and the class counts."""
    from migration_engine.sandbox.client_env import client_env

    with tempfile.TemporaryDirectory(prefix="peppol-preflight-") as tmp:
        folder = workdir or Path(tmp)
        batch = folder / "preflight.csv"
        write_file(batch, parties)
        sandbox = Sandbox(parties)
        try:
            smp = sandbox.url.split("://", 1)[1]
            env = client_env(
                sandbox.url,
                db_url=f"sqlite:///{folder / 'preflight.db'}",
                profiles_dir=PROFILES,
                PEPPOL_MIGRATE_VERIFY__DNS_SERVER=sandbox.dns_address,
                PEPPOL_MIGRATE_VERIFY__ECONNECT_SMP_HOST=f"{smp}/smp/econnect",
                PEPPOL_MIGRATE_NETWORK__KNOWN_SMPS=f"{smp}/smp/{PROVIDER}={PROVIDER}",
                PEPPOL_MIGRATE_NETWORK__DIRECTORY_URL="",
                PEPPOL_MIGRATE_LOOKUPS__DNS_PER_S=str(dns_per_s),
                PEPPOL_MIGRATE_LOOKUPS__SMP_PER_S=str(smp_per_s),
                PEPPOL_MIGRATE_LOOKUPS__MAX_CONCURRENCY=str(concurrency),
            )
            out_path, err_path = folder / "plan.json", folder / "plan.err"
            with out_path.open("wb") as out_fh, err_path.open("wb") as err_fh:
                started = time.perf_counter()
                proc = subprocess.Popen(
                    [*CLI, "--log-level", "warning", "plan", str(batch), "--json"],
                    env={**{k: v for k, v in os.environ.items() if not k.startswith("PEPPOL_MIGRATE_")}, **env},
                    stdout=out_fh,
                    stderr=err_fh,
                )
                _, status, usage = os.wait4(proc.pid, 0)  # the plan's own peak, not the sandbox's
                seconds = time.perf_counter() - started
            code = os.waitstatus_to_exitcode(status)
            out, err = out_path.read_text(encoding="utf-8"), err_path.read_text(encoding="utf-8", errors="replace")
        finally:
            sandbox.stop()
    if code not in (0, 1):
        raise RuntimeError(f"plan failed ({code}): {err[-2000:]}")
    plan = json.loads(out)
    summary = plan["summary"]
    if summary["total"] != parties:
        raise RuntimeError(f"the plan covered {summary['total']} of {parties} parties")
    smp_calls = sum(len(MIXES[i % len(MIXES)]) + 2 for i in range(parties) if owner(i) == PROVIDER)
    defaults_s = max(parties / 50.0, smp_calls / 10.0)
    return {
        "preflight_parties": parties,
        "preflight_s": round(seconds, 2),
        "preflight_parties_per_s": round(parties / seconds, 1),
        "preflight_peak_mb": round(usage.ru_maxrss / 1024, 1),  # ru_maxrss is in KiB on Linux
        "limits": plan["limits"],
        "by_class": summary["by_class"],
        "at_default_limits_s": round(defaults_s),
    }


def lines(result: dict[str, Any]) -> list[str]:
    lim = result["limits"]
    return [
        f"preflight: `plan FILE` of {result['preflight_parties']} parties against the sandbox (DNS + SMP): "
        f"{result['preflight_parties_per_s']:g} parties/s ({result['preflight_s']:g} s), "
        f"peak {result['preflight_peak_mb']:g} MB",
        f"  lookups limited to {lim['dns_per_s']:g} DNS queries/s, {lim['smp_per_s_per_host']:g} calls/s per SMP, "
        f"{lim['max_concurrency']} in flight per dependency; raised from the defaults (50 DNS/s, 10 per SMP), "
        f"at which this plan would take about {result['at_default_limits_s']} s",
        "  classes: " + ", ".join(f"{k} {v}" for k, v in result["by_class"].items()),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.preflight", description=__doc__.split("\n\n")[0])
    parser.add_argument("--parties", type=int, default=DEFAULT_PARTIES)
    parser.add_argument("--dns-per-s", type=float, default=DNS_PER_S)
    parser.add_argument("--smp-per-s", type=float, default=SMP_PER_S)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.serve is not None:
        return serve(args.serve)
    result = run(args.parties, dns_per_s=args.dns_per_s, smp_per_s=args.smp_per_s, concurrency=args.concurrency)
    print(json.dumps(result, indent=2) if args.json else "\n".join(lines(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
