"""The engine's settings for running against a sandbox, as ``PEPPOL_MIGRATE_*`` variables.

One helper for the demo, the tests and the benchmarks: the sandbox's URL for the PSB and
its identity server, the sandbox's OAuth2 client, no client-side rate limit (the sandbox's
own latency and limits are what a run meets), the ``https`` handoff to the sandbox's other
providers, and polls short enough that a takeover is seen within a second or two.
"""

from __future__ import annotations

import secrets
import shlex
from pathlib import Path

from migration_engine.sandbox.config import SandboxConfig


def client_env(
    sandbox_url: str,
    *,
    db_url: str,
    profiles_dir: str | Path = "",
    encryption_key: str | None = None,
    audit_key: str | None = None,
    concurrency: int = 8,
    poll_interval_s: float = 0.1,
    takeover_poll_s: float = 0.25,
    takeover_poll_max_s: float = 1.0,
    **extra: str,
) -> dict[str, str]:
    """Settings (as environment variables) for an engine that migrates against ``sandbox_url``.

    ``extra`` adds or overrides variables by their full name (``PEPPOL_MIGRATE_...``).
    Without ``encryption_key`` a random key-encryption key is made for this run (and without
    ``audit_key`` a random audit key); without
    ``profiles_dir`` the packaged profiles are used.
    """
    client = SandboxConfig()
    env = {
        "PEPPOL_MIGRATE_DATABASE__URL": db_url,
        "PEPPOL_MIGRATE_PSB__BASE_URL": sandbox_url,
        "PEPPOL_MIGRATE_PSB__IDENTITY_URL": sandbox_url,
        "PEPPOL_MIGRATE_PSB__CLIENT_ID": client.client_id,
        "PEPPOL_MIGRATE_PSB__CLIENT_SECRET": client.client_secret,
        "PEPPOL_MIGRATE_PSB__MAX_RPS": "0",
        "PEPPOL_MIGRATE_KEYS__ENCRYPTION_KEY": encryption_key or secrets.token_urlsafe(32),
        "PEPPOL_MIGRATE_AUDIT__KEY": audit_key or secrets.token_urlsafe(32),
        "PEPPOL_MIGRATE_HANDOFF__MODE": "https",
        "PEPPOL_MIGRATE_HANDOFF__ENDPOINT": f"{sandbox_url}/sandbox/providers/{{new_provider}}/handoff",
        "PEPPOL_MIGRATE_WORKER__CONCURRENCY": str(concurrency),
        "PEPPOL_MIGRATE_WORKER__POLL_INTERVAL_S": str(poll_interval_s),
        "PEPPOL_MIGRATE_TAKEOVER__POLL_S": str(takeover_poll_s),
        "PEPPOL_MIGRATE_TAKEOVER__POLL_MAX_S": str(takeover_poll_max_s),
        "PEPPOL_MIGRATE_PROFILES__DIR": str(profiles_dir),
    }
    env.update(extra)
    return env


# What a user chooses for themselves: where the engine's database is, its key-encryption key
# and audit key (secrets: never printed), where the profiles are, how many steps run at once.
_USERS_OWN = (
    "PEPPOL_MIGRATE_DATABASE__URL",
    "PEPPOL_MIGRATE_KEYS__ENCRYPTION_KEY",
    "PEPPOL_MIGRATE_AUDIT__KEY",
    "PEPPOL_MIGRATE_PROFILES__DIR",
    "PEPPOL_MIGRATE_WORKER__CONCURRENCY",
)


def shell_exports(sandbox_url: str, *, dns_server: str | None = None, sml_zone: str | None = None) -> list[str]:
    """``export NAME=VALUE`` lines that point a shell's ``peppol-migrate`` at ``sandbox_url``.

    The variables of ``client_env`` except the user's own choices (``_USERS_OWN``); with
    ``dns_server`` (``host:port``) the SML zone's DNS too, for ``verify.peppol_network``. The
    client secret printed is the sandbox's public one, valid against a sandbox only.
    """
    env = client_env(sandbox_url, db_url="", profiles_dir="", encryption_key="-", audit_key="-")
    for name in _USERS_OWN:
        env.pop(name)
    if dns_server is not None:
        env["PEPPOL_MIGRATE_VERIFY__DNS_SERVER"] = dns_server
        env["PEPPOL_MIGRATE_VERIFY__SML_ZONE"] = sml_zone or SandboxConfig().sml_zone
    return [f"export {name}={shlex.quote(value)}" for name, value in env.items()]
