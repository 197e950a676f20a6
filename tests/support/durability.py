"""Helpers of the durability tests: worker processes, what they and the CLI printed, and the
search of everything an operator can see for keys, tokens and secrets.

Waiting is on observable events only: the sandbox's call log and the processes themselves
(``Popen.wait(timeout)``), each bounded, never a fixed sleep.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from migration_engine.keys import mask
from migration_engine.machine import State
from migration_engine.store import Store
from tests.support import ROOT, TEST_AUDIT_KEY, TEST_KEK
from tests.support.cli import BIN, peppol_migrate


@dataclass
class Transcript:
    """Everything the engine showed: CLI output, worker logs (JSON lines), by a label."""

    folder: Path
    texts: dict[str, str] = field(default_factory=dict)
    logs: list[Path] = field(default_factory=list)

    def cli(self, *args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
        result = peppol_migrate(*args, env=env, cwd=ROOT, timeout=timeout)
        self.texts[f"{len(self.texts)}: peppol-migrate {' '.join(args)}"] = result.stdout + result.stderr
        return result

    def spawn(self, *args: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Start `peppol-migrate ARGS` with its output in a file (a pipe could fill and stall it)."""
        log = self.folder / f"process-{len(self.logs):03d}.log"
        self.logs.append(log)
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("PEPPOL_MIGRATE_")}
        full_env.update(env)
        with log.open("wb") as out:
            return subprocess.Popen([str(BIN), *args], env=full_env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)

    def everything(self) -> dict[str, str]:
        found = dict(self.texts)
        for log in self.logs:
            found[log.name] = log.read_text(encoding="utf-8", errors="replace")
        return found


def wait_for_calls(model: Any, proc: subprocess.Popen[bytes], since_seq: int, n: int, timeout_s: float) -> bool:
    """Wait until the sandbox has logged ``n`` API calls after ``since_seq``; False if the process
    exited first. Polls the call log between bounded waits on the process itself."""
    deadline = time.monotonic() + timeout_s
    while len(model.calls(since=since_seq)) < n:
        try:
            proc.wait(timeout=0.01)
            return False
        except subprocess.TimeoutExpired:
            pass
        assert time.monotonic() < deadline, f"the worker made fewer than {n} calls in {timeout_s:.0f} s"
    return True


def last_seq(model: Any) -> int:
    calls = model.calls()
    return calls[-1]["seq"] if calls else 0


def database_text(db_url: str) -> str:
    """Every row of every table, as text: what anyone with the database file would read."""
    url = sa.make_url(db_url)
    if url.get_backend_name() == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            tables = sa.inspect(conn).get_table_names()
            return "\n".join(
                repr(tuple(row)) for name in tables for row in conn.execute(sa.text(f'SELECT * FROM "{name}"'))
            )
    finally:
        engine.dispose()


def secrets_to_find(sandbox: Any, *extra_keys: str) -> dict[str, str]:
    """Every key the SML issued, every access token, the client secret and the KEK, by label."""
    found = {f"key {mask(k)}": k for k in [*sandbox.model.issued_keys(), *extra_keys]}
    found |= {f"token {t[:4]}…": t for t in sandbox.model.tokens.issued()}
    found["client secret"] = sandbox.config.client_secret
    found["key-encryption key"] = TEST_KEK
    found["audit key"] = TEST_AUDIT_KEY
    return found


def leaks(texts: dict[str, str], secrets: dict[str, str]) -> list[str]:
    """``where: what`` for every secret found in a text (the secret itself is not repeated)."""
    return [f"{where}: {label}" for where, text in texts.items() for label, s in secrets.items() if s in text]


def _value(state: State | None) -> str:
    assert state is not None, "a transition names both states"
    return state.value


def moves_by_migration(store: Store) -> dict[str, list[tuple[str, str]]]:
    """Each party's (from, to) transitions, in order."""
    return {
        r.party_id: [(_value(e.from_state), _value(e.to_state)) for e in store.events(r.id) if e.kind == "transition"]
        for r in store.list_migrations()
    }


# The changes each migration makes at the PSB when everything goes right once (default profile):
# the calls of the committed steps. "PUT migration" is the PUT config that carries the key;
# "PUT config" the profile's capabilities; "POST handoff" the key to the new provider.
PSB_CHANGES = {
    "to-econnect": Counter({"PUT migration": 1, "PUT config": 1, "PUT hook": 1, "PUT user": 1, "PUT enroll": 1}),
    "key_rejected": Counter({"PUT migration": 1}),  # refused: it changed nothing
    "from-econnect": Counter({"GET prepareToMigrate": 1, "POST handoff": 1}),  # cleanup DELETEs find nothing
}
# The calls that must not be made twice: each may be repeated only after a crash between the call
# and its commit, and the repeat is harmless by the PSB's rules (docs/durability.md).
NON_IDEMPOTENT = ("PUT migration", "GET prepareToMigrate", "POST handoff")


_KINDS = (
    (re.compile(r"/prepareToMigrate$"), "prepareToMigrate"),
    (re.compile(r"/peppol/config/party/[^/]+$"), "config"),
    (re.compile(r"/hook(/[^/]+)?$"), "hook"),
    (re.compile(r"/user/[^/]+/party(/[^/]+)?$"), "user"),
    (re.compile(r"/enroll$"), "enroll"),
    (re.compile(r"/deliveryOption$"), "deliveryOption"),
    (re.compile(r"/handoff$"), "handoff"),
)


def change_kind(call: dict[str, Any]) -> str:
    name = next((kind for rx, kind in _KINDS if rx.search(call["path"])), call["path"])
    return f"{call['method']} {name}"


def psb_changes(calls: list[dict[str, Any]]) -> dict[str, Counter[str]]:
    """Per party, the mutating calls that took effect at the PSB (answered 2xx, or dropped only
    after the PSB acted), by kind: ``PUT config``, ``GET prepareToMigrate``, ``DELETE user``..."""
    found: dict[str, Counter[str]] = {}
    for c in calls:
        if c["mutating"] and c["status"] and 200 <= c["status"] < 300 and c["fault"] in (None, "dropped_after"):
            found.setdefault(c["partyId"], Counter())[change_kind(c)] += 1
    return found


def classified(calls: list[dict[str, Any]], handoffs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sandbox's API calls and the gateway's handoff POSTs, each with its ``kind``
    (``change_kind``), a party's PUT config before its first deliveryOption lookup being its
    ``PUT migration`` (only the key_issued step PUTs before the takeover is polled)."""
    polled: set[str] = set()
    out = []
    for c in calls:
        kind = change_kind(c)
        if kind == "GET deliveryOption":
            polled.add(c["partyId"])
        elif kind == "PUT config" and c["partyId"] not in polled:
            kind = "PUT migration"
        out.append({**c, "kind": kind})
    out += [{**h, "method": "POST", "kind": "POST handoff", "mutating": True} for h in handoffs]
    return out


def audit_request_ids(store: Store) -> set[str]:
    """The request ids of every ``api_call`` audit event: the calls whose step was committed."""
    return {
        e.request_id
        for r in store.list_migrations()
        for e in store.events(r.id)
        if e.kind == "api_call" and e.request_id
    }


def file_texts(folder: Path, *, skip: dict[str, str]) -> dict[str, str]:
    """Every file under ``folder`` as text (bytes read as Latin-1, so any byte sequence of a
    secret is found), except the names in ``skip`` (name: why it may hold a key)."""
    return {
        str(f.relative_to(folder)): f.read_bytes().decode("latin-1")
        for f in sorted(folder.rglob("*"))
        if f.is_file() and f.name not in skip
    }
