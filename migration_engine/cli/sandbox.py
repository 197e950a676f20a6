"""``peppol-migrate sandbox``: serve the simulator of the PSB and the Peppol network on loopback.

With the demo, the one command module that imports the sandbox (an import-linter contract
keeps it so): a production install runs no part of the simulator unless asked to.
"""

from __future__ import annotations

import argparse
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


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; a bad fault setting or a taken port is bad input (exit 2)."""
    # Imported here, not at the top: building the CLI's parser must not load the simulator.
    from migration_engine.sandbox import SandboxConfig
    from migration_engine.sandbox.server import serve

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
    print(f"sandbox: PSB and identity server on http://{args.host}:{args.port}", flush=True)
    dns_port = args.dns_port if args.dns_port >= 0 else None
    if dns_port is not None:
        print(
            f"sandbox: SML zone {config.sml_zone} as DNS on {args.host}:{dns_port} (UDP), "
            f"SMPs at http://{args.host}:{args.port}/smp/{{smp id}}",
            flush=True,
        )
    try:
        serve(config, host=args.host, port=args.port, dns_port=dns_port)
    except OSError as exc:  # e.g. the DNS port is taken
        raise InputError(f"sandbox: cannot serve on {args.host}: {exc.strerror or exc} (another --dns-port?)") from None
    return 0
