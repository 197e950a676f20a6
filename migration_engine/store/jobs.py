"""Periodic jobs the workers of one database share (the reconciler): a lease row per job.

A worker runs a job only after ``start`` took the row: a compare-and-set that succeeds when
nobody holds an unexpired lease and, unless forced, the last run finished at least
``every_s`` ago. So several workers on one PostgreSQL database run the job one at a time and,
together, once per interval. A run renews its lease while it works; ``finish`` releases it and
notes the time. A worker that dies mid-run leaves a lease that runs out by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from migration_engine.store.database import Database
from migration_engine.store.schema import job_runs

j = job_runs.c


@dataclass(frozen=True)
class JobRun:
    """A job's lease row: who runs it now (until when), when its last run started and finished."""

    name: str
    owner: str | None
    lease_until: datetime | None
    started_at: datetime | None
    finished_at: datetime | None

    def held(self, now: datetime) -> bool:
        """Whether a run is under way (its lease has not run out)."""
        return self.owner is not None and self.lease_until is not None and self.lease_until > now


def read(db: Database, name: str) -> JobRun | None:
    with db.read("read a job's lease") as conn:
        row = conn.execute(select(job_runs).where(j.name == name)).mappings().one_or_none()
    return None if row is None else JobRun(**{c.name: row[c.name] for c in job_runs.c})


def start(db: Database, name: str, *, owner: str, lease_s: float, every_s: float, force: bool = False) -> bool:
    """Take the job's lease for ``owner``; False when another run holds it or (unless ``force``)
    the last run finished less than ``every_s`` ago."""
    dialect_insert = sqlite.insert if db.is_sqlite else postgresql.insert
    with db.write(f"start the {name} job") as conn:
        now = db.clock.now()
        conn.execute(dialect_insert(job_runs).values(name=name).on_conflict_do_nothing(index_elements=[j.name]))
        free = or_(j.lease_until.is_(None), j.lease_until <= now, j.owner == owner)
        due = or_(j.finished_at.is_(None), j.finished_at <= now - timedelta(seconds=every_s))
        where = and_(j.name == name, free) if force else and_(j.name == name, free, due)
        taken = conn.execute(
            update(job_runs)
            .where(where)
            .values(owner=owner, lease_until=now + timedelta(seconds=lease_s), started_at=now)
        )
        return bool(taken.rowcount == 1)


def renew(db: Database, name: str, *, owner: str, lease_s: float) -> bool:
    """Extend ``owner``'s lease; False when it no longer holds it."""
    with db.write(f"renew the {name} job's lease") as conn:
        now = db.clock.now()
        renewed = conn.execute(
            update(job_runs)
            .where(j.name == name, j.owner == owner)
            .values(lease_until=now + timedelta(seconds=lease_s))
        )
        return bool(renewed.rowcount == 1)


def finish(db: Database, name: str, *, owner: str) -> None:
    """Release ``owner``'s lease and note when the run finished (nothing if it lost the lease)."""
    with db.write(f"finish the {name} job") as conn:
        now = db.clock.now()
        released = {"owner": None, "lease_until": None, "finished_at": now}
        conn.execute(update(job_runs).where(j.name == name, j.owner == owner).values(released))
