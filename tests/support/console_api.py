"""The console's JSON API over a real store: a Runtime, an app with a viewer's and an operator's
bearer token, and a fingerprint of the database to show that a refused call wrote nothing."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

from migration_engine.clock import Clock
from migration_engine.console.app import create_app
from migration_engine.console.auth import hash_secret
from migration_engine.engine.runtime import Runtime
from migration_engine.settings import ConsoleSettings
from migration_engine.store import Store
from tests.support import engine_settings

VIEWER_TOKEN = "viewer-token-0123456789abcdef"
OPERATOR_TOKEN = "operator-token-0123456789abcdef"
SESSION_KEY = "console-test-session-key-0123456789abcdef"
NOWHERE = "http://127.0.0.1:9"  # no API call of the console reaches the PSB; nothing listens here
# scrypt is slow on purpose: hash the test tokens once per process.
_HASHES: dict[str, str] = {}


def _hashed(secret: str) -> str:
    if secret not in _HASHES:
        _HASHES[secret] = hash_secret(secret)
    return _HASHES[secret]


def console_runtime(db_url: str, clock: Clock, **env: str) -> Runtime:
    """A Runtime on ``db_url`` whose console knows the tokens ``vera`` (viewer) and ``otto`` (operator)."""
    env.setdefault("PEPPOL_MIGRATE_VERIFY__ECONNECT_SMP_HOST", "smp.econnect.test")
    settings = engine_settings(db_url, NOWHERE, **env)
    console = ConsoleSettings(
        tokens=(f"vera:viewer:{_hashed(VIEWER_TOKEN)}", f"otto:operator:{_hashed(OPERATOR_TOKEN)}"),
        session_key=SESSION_KEY,
    )
    return Runtime(dataclasses.replace(settings, console=console), clock=clock)


def console_app(rt: Runtime) -> Any:
    return create_app(rt)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def fingerprint(store: Store) -> str:
    """A hash of every migration row and audit event: equal before and after means nothing was written."""
    h = hashlib.sha256()
    for b in store.console_batches():
        h.update(repr((b.name, b.by_state)).encode())
    for record in store.list_migrations():
        h.update(repr(record).encode())
        for event in store.events(record.id):
            h.update(event.hash.encode())
    return h.hexdigest()
