"""`peppol-migrate serve`: the operations console (web pages and the HTTP API), docs/console.md.

    serve [--host H] [--port P]   run the console until Ctrl-C (uvicorn); loopback by default
    serve --hash-password         read a secret from standard input, print its scrypt hash
                                  (for a users file or PEPPOL_MIGRATE_CONSOLE__USERS)

Refuses to start (exit 2, naming the setting) without a session key or without users.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from typing import TYPE_CHECKING, Any

from migration_engine.errors import InputError

if TYPE_CHECKING:
    from migration_engine.engine.runtime import Runtime

log = logging.getLogger("migration_engine.cli.serve")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="the operations console: web pages and the HTTP API (docs/console.md)",
        description="Serve the console on console.host:console.port (default 127.0.0.1:8080). Put a TLS reverse "
        "proxy in front of it to reach it from elsewhere. Needs PEPPOL_MIGRATE_CONSOLE__SESSION_KEY and users "
        "(console.users_file or PEPPOL_MIGRATE_CONSOLE__USERS).",
    )
    p.add_argument("--host", help="address to bind (default: console.host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to bind (default: console.port, 8080)")
    p.add_argument(
        "--hash-password",
        action="store_true",
        help="read a password or token from standard input (not echoed), print its hash for the users file; "
        "serve nothing",
    )


def _read_secret() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("secret: ")
        if getpass.getpass("again: ") != first:
            raise InputError("--hash-password: the two entries differ; nothing hashed")
        return first
    raw = sys.stdin.buffer.readline()
    try:
        return raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise InputError("--hash-password: the secret read from standard input is not UTF-8") from None


def hash_password() -> int:
    from migration_engine.console.auth import hash_secret

    secret = _read_secret()
    if len(secret) < 8:
        raise InputError("--hash-password: the secret is shorter than 8 characters; nothing hashed")
    print(hash_secret(secret))
    return 0


def run(rt: Runtime, args: argparse.Namespace) -> int:
    if args.hash_password:
        return hash_password()
    from migration_engine.console.app import create_app
    from migration_engine.console.app import run as serve
    from migration_engine.settings.checks import is_loopback_host

    console = rt.settings.console
    host = args.host or console.host
    port = console.port if args.port is None else args.port
    if not 1 <= port <= 65535:
        raise InputError(f"--port {port}: must be a port number from 1 to 65535")
    app = create_app(rt, settings=console)  # no session key or no users: ConfigError, exit 2
    rt.checked_store()  # no database or an old schema: exit 2 before binding
    if not is_loopback_host(host):
        print(
            f"warning: serving on {host}, not loopback: anyone who can reach port {port} sees the login page; "
            "put a TLS reverse proxy in front of it (docs/console.md)",
            file=sys.stderr,
        )
    print(f"console on http://{host}:{port}/ (Ctrl-C stops it)", file=sys.stderr)
    serve(app, host=host, port=port)
    return 0
