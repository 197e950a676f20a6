"""``peppol-migrate sandbox``: serve the simulator of the PSB and the Peppol network on loopback.

With the demo, the one command module that imports the sandbox (an import-linter contract
keeps it so): a production install runs no part of the simulator unless asked to.

On start it prints the ``export`` lines that point another shell's ``peppol-migrate`` at it;
``--parties FILE`` registers parties first (``sandbox/parties_file.py`` has the format) and
``--batch-out FILE`` writes the batch that migrates them, so a user can try a whole run.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from migration_engine.errors import InputError


def add_parser(sub: Any) -> None:
    """Register the ``sandbox`` subcommand on the CLI's subparsers."""
    sb = sub.add_parser("sandbox", help="serve the PSB + Peppol network simulator")
    sb.add_argument("--host", default="127.0.0.1")
    sb.add_argument("--port", type=int, default=8080)
    sb.add_argument("--latency-ms", type=float, default=0.0)
    sb.add_argument("--error-rate", type=float, default=0.0, help="share of API calls answered 500/503")
    sb.add_argument("--throttle-rate", type=float, default=0.0, help="share of API calls answered 429 (Retry-After 1)")
    sb.add_argument("--rate-limit-rps", type=float, default=None, help="429 with Retry-After above this rate")
    sb.add_argument("--drop-rate", type=float, default=0.0, help="share of API calls whose connection drops")
    sb.add_argument("--token-ttl-s", type=float, default=3600.0, help="lifetime of an access token")
    sb.add_argument("--propagation-delay-s", type=float, default=0.0)
    sb.add_argument("--seed", type=int, default=None)
    sb.add_argument("--dns-port", type=int, default=8053, help="UDP port of the SML zone's DNS server (-1: none)")
    sb.add_argument(
        "--parties",
        type=Path,
        help="CSV of parties to register first: party_id,provider[,document_types] (provider: econnect or a name)",
    )
    sb.add_argument(
        "--batch-out",
        type=Path,
        help="with --parties: write the batch file that migrates them (inbound rows with a prepared key)",
    )


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; a bad fault setting, parties file or taken port is bad input (exit 2)."""
    # Imported here, not at the top: building the CLI's parser must not load the simulator.
    from migration_engine.sandbox import SandboxConfig, SandboxModel
    from migration_engine.sandbox.client_env import shell_exports
    from migration_engine.sandbox.parties_file import read_parties, register_parties, write_batch
    from migration_engine.sandbox.server import serve

    if args.batch_out is not None and args.parties is None:
        raise InputError("sandbox: --batch-out needs --parties (the parties to migrate)")
    try:
        config = SandboxConfig(
            latency_ms=args.latency_ms,
            error_rate=args.error_rate,
            throttle_rate=args.throttle_rate,
            rate_limit_rps=args.rate_limit_rps,
            drop_rate=args.drop_rate,
            token_ttl_s=args.token_ttl_s,
            propagation_delay_s=args.propagation_delay_s,
            seed=args.seed,
        )
    except ValueError as exc:
        raise InputError(f"sandbox: {exc}") from None
    model = SandboxModel(config)
    if args.parties is not None:
        parties = read_parties(args.parties)  # all checked before any is registered
        owners = register_parties(model, parties)
        noun = "party" if len(parties) == 1 else "parties"
        print(f"sandbox: registered {len(parties)} {noun} from {args.parties}: {_per(owners)}", flush=True)
        if args.batch_out is not None:
            rows = write_batch(model, parties, args.batch_out)
            print(f"sandbox: wrote the batch {args.batch_out} (mode 600, it holds keys): {_per(rows)}", flush=True)
    local = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
    url = f"http://{local}:{args.port}"
    print(f"sandbox: PSB and identity server on {url}", flush=True)
    dns_port = args.dns_port if args.dns_port >= 0 else None
    if dns_port is not None:
        print(
            f"sandbox: SML zone {config.sml_zone} as DNS on {args.host}:{dns_port} (UDP), SMPs at {url}/smp/{{smp id}}",
            flush=True,
        )
    print(
        "sandbox: point peppol-migrate at it from another shell with these lines "
        "(the client secret is the sandbox's public one):",
        flush=True,
    )
    dns_server = f"{local}:{dns_port}" if dns_port is not None else None
    for line in shell_exports(url, dns_server=dns_server, sml_zone=config.sml_zone):
        print(line, flush=True)
    print(
        "# plus a database, a key-encryption key and an audit key of your own, e.g.\n"
        "#   export PEPPOL_MIGRATE_DATABASE__URL=sqlite:///sandbox-run.db\n"
        '#   export PEPPOL_MIGRATE_KEYS__ENCRYPTION_KEY="$(openssl rand -base64 32)"\n'
        '#   export PEPPOL_MIGRATE_AUDIT__KEY="$(openssl rand -base64 32)"',
        flush=True,
    )
    try:
        serve(host=args.host, port=args.port, dns_port=dns_port, model=model)
    except OSError as exc:  # e.g. the DNS port is taken
        raise InputError(f"sandbox: cannot serve on {args.host}: {exc.strerror or exc} (another --dns-port?)") from None
    return 0


def _per(counts: Any) -> str:
    return ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))
