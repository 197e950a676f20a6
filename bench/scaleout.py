"""Several worker processes against one PostgreSQL database: `peppol-migrate run --until-idle`
started N times at once, exactly as an operator would scale out, timed until the last exits."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from sqlalchemy import make_url

from bench.parties import Party, engine_env, write_batch
from migration_engine.backoffice.importer import import_file
from migration_engine.engine.runtime import Runtime
from migration_engine.settings import load_settings

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _admin(url: str) -> psycopg.Connection[tuple[object, ...]]:
    u = make_url(url)
    return psycopg.connect(
        host=u.host or "127.0.0.1",
        port=u.port or 5432,
        user=u.username or "postgres",
        password=u.password or None,
        dbname=u.database or "postgres",
        autocommit=True,
        connect_timeout=5,
    )


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A fresh database next to ``admin_url``'s, dropped afterwards; yields its URL."""
    name = f"pm_bench_{secrets.token_hex(5)}"
    with _admin(admin_url) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield (
            make_url(admin_url)
            .set(drivername="postgresql+psycopg", database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        with _admin(admin_url) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_workers(
    sandbox_url: str, parties: list[Party], *, db_url: str, workers: int, concurrency: int, workdir: Path
) -> float:
    """Import ``parties``, then start ``workers`` processes at once; seconds until the last exits."""
    env = engine_env(db_url, sandbox_url, concurrency=concurrency)
    batch = write_batch(workdir / "batch.csv", parties)
    rt = Runtime(load_settings(env=env))
    try:
        rt.store.upgrade()
        import_file(rt, path=batch, batch_name="bench", dry_run=False, actor="bench")
    finally:
        rt.close()
    command = [sys.executable, "-m", "migration_engine.cli", "run", "--until-idle"]
    logs = [(workdir / f"worker-{i}.log").open("w") for i in range(workers)]
    try:
        started = time.perf_counter()
        procs = [
            subprocess.Popen(command, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=log) for log in logs
        ]
        codes = [p.wait() for p in procs]
        seconds = time.perf_counter() - started
    finally:
        for log in logs:
            log.close()
    if any(codes):
        raise RuntimeError(f"a worker process failed (exit codes {codes}); see {workdir}/worker-*.log")
    return seconds
