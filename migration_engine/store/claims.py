"""Claiming due migrations with a lease, renewing it, and what is left to do.

A claim sets ``lease_owner`` and ``lease_until`` and bumps ``version`` in one short
transaction, so a worker whose lease expired and whose row another worker re-claimed can no
longer apply its late result: its compare-and-set names the old version.

PostgreSQL selects the ids in a CTE ``FOR UPDATE SKIP LOCKED`` first and then updates by id
(updating straight from a LIMIT-ed locking subquery may update more rows than the limit:
Oban's note). SQLite runs one ``UPDATE ... WHERE id IN (SELECT ... LIMIT n) RETURNING``
under ``BEGIN IMMEDIATE``: the write lock makes the select and the update one step.

Priority between batches (pacing): ``first`` lists groups of batch ids, highest priority first;
each group is claimed in a pass of its own (``batch_id IN (...)``, through ``ix_migrations_batch_due``)
before the pass over every due row, and ``last`` (batches below the default priority) is left out
of that pass and claimed after it. Without groups the claim is the one statement it always was.

``now`` is ``db.clock``'s: in production on PostgreSQL that is the database's time carried
forward on this host (``db_clock.py``), so every worker compares leases and due times on one
clock without a round trip to the server per claim.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from functools import cache
from typing import Any

from sqlalchemy import Integer, Text, Update, and_, bindparam, case, false, func, or_, select, type_coerce, update

from migration_engine.store.database import Database
from migration_engine.store.queries import open_state, records_from
from migration_engine.store.records import MigrationRecord, WorkSummary
from migration_engine.store.schema import UtcDateTime, migrations

m = migrations.c


def _claimable(now: Any) -> Any:
    return and_(
        m.next_run_at <= now,
        m.paused == false(),  # spelled as in the index predicate, so SQLite uses the index
        open_state(),
        or_(m.lease_until.is_(None), m.lease_until <= now),
    )


_ALL, _ONLY, _EXCEPT = "all", "only", "except"


@cache
def _claim_statement(sqlite: bool, batches: str = _ALL) -> Update:
    """The claiming UPDATE, built once per dialect and kind of pass (the hot path); values are
    bind parameters. ``batches``: every due row, only those of the listed batches, or all but them."""
    now = bindparam("now", type_=UtcDateTime())
    where = _claimable(now)
    listed = m.batch_id.in_(bindparam("batches", expanding=True))
    if batches == _ONLY:
        where = and_(where, listed)
    elif batches == _EXCEPT:
        where = and_(where, or_(m.batch_id.is_(None), ~listed))
    due = select(m.id).where(where).order_by(m.next_run_at, m.id).limit(bindparam("limit", type_=Integer()))
    values = {
        "lease_owner": bindparam("worker_id", type_=Text()),
        "lease_until": bindparam("until", type_=UtcDateTime()),
        "version": m.version + 1,
    }
    if sqlite:
        stmt = update(migrations).where(m.id.in_(due.scalar_subquery()))
    else:
        chosen = due.with_for_update(skip_locked=True).cte("chosen")
        stmt = update(migrations).where(m.id == chosen.c.id)
    return stmt.values(values).returning(*migrations.c)


def claim_due(
    db: Database,
    *,
    worker_id: str,
    limit: int,
    lease_s: float,
    first: Sequence[Sequence[int]] = (),
    last: Sequence[Sequence[int]] = (),
) -> list[MigrationRecord]:
    """Lease up to ``limit`` due migrations to ``worker_id``, oldest due first; the batches of
    ``first`` (groups, highest priority first) before the rest, those of ``last`` after it."""
    if limit <= 0:
        return []
    now = db.clock.now()
    params: dict[str, Any] = {"now": now, "until": now + timedelta(seconds=lease_s), "worker_id": worker_id}
    passes: list[tuple[str, list[int]]] = [(_ONLY, list(g)) for g in first if g]
    below = sorted({b for g in last for b in g})
    passes.append((_EXCEPT, below) if below else (_ALL, []))
    passes += [(_ONLY, list(g)) for g in last if g]
    records: list[MigrationRecord] = []
    with db.write("claim due migrations") as conn:
        for kind, ids in passes:
            left = limit - len(records)
            if left <= 0:
                break
            stmt = _claim_statement(db.is_sqlite, kind)
            values = params | {"limit": left} | ({"batches": ids} if kind != _ALL else {})
            rows = conn.execute(stmt, values).mappings().all()
            # RETURNING comes in no particular order; hand them out in the order they were due.
            claimed = records_from(db, conn, rows)
            claimed.sort(key=lambda r: (r.next_run_at or now, r.id))
            records += claimed
    return records


def renew_lease(db: Database, *, migration_id: int, worker_id: str, version: int, lease_s: float) -> bool:
    """Extend a lease this worker still holds (same version); False if it lost the row."""
    until = db.clock.now() + timedelta(seconds=lease_s)
    stmt = (
        update(migrations)
        .where(m.id == migration_id, m.lease_owner == worker_id, m.version == version)
        .values(lease_until=until)
    )
    with db.write("renew a lease") as conn:
        return conn.execute(stmt).rowcount == 1


def work_summary(db: Database) -> WorkSummary:
    """Due now, in flight and scheduled later, in one pass over the open, scheduled rows."""
    now = db.clock.now()
    leased = and_(m.lease_until.is_not(None), m.lease_until > now)
    free = and_(m.paused == false(), or_(m.lease_until.is_(None), m.lease_until <= now))
    in_flight = func.coalesce(func.sum(case((leased, 1), else_=0)), 0)
    due = func.coalesce(func.sum(case((and_(free, m.next_run_at <= now), 1), else_=0)), 0)
    later = func.coalesce(func.sum(case((and_(free, m.next_run_at > now), 1), else_=0)), 0)
    # MIN() over a CASE: coerce, so SQLite's UTC text is read back as an aware datetime.
    earliest = type_coerce(func.min(case((free, m.next_run_at), else_=None)), UtcDateTime)
    # A leased row is in flight even when it is not scheduled (e.g. paused meanwhile).
    query = select(due, in_flight, later, earliest).where(open_state(), or_(m.next_run_at.is_not(None), leased))
    with db.read("summarise the work left") as conn:
        row = conn.execute(query).one()
    return WorkSummary(due_now=int(row[0]), leased=int(row[1]), scheduled_later=int(row[2]), next_run_at=row[3])
