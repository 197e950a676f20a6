"""The budgets per dependency every worker of a database shares: their virtual schedules.

One row per budget (``psb``, ``dns``, ``directory``, ``smp <base URL>``): ``next_free_s``, when
its next free slot starts, in seconds since the epoch on the database's clock. ``reserve``
takes a block of ``count`` slots for the caller in ONE atomic statement,

    INSERT ... ON CONFLICT (name) DO UPDATE
        SET next_free_s = max(budgets.next_free_s, :now) + :count / :rate ... RETURNING next_free_s

and returns where the block starts (``limiter.reserve_slots`` is the same arithmetic). On
PostgreSQL the row lock serialises concurrent reservations, and under READ COMMITTED an
UPDATE that waited for the lock works on the row as the other committed it: no two workers
ever get the same slot. On SQLite the write transaction starts with ``BEGIN IMMEDIATE``,
which takes the file's write lock first: the same guarantee for processes on one host.

``now`` is the store's clock: on PostgreSQL the runtime's ``DatabaseClock`` (the server's
time), so workers on hosts whose wall clocks disagree still share one timeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import BindParameter, case, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.types import Double

from migration_engine.errors import StoreError
from migration_engine.limiter import BudgetUnavailable
from migration_engine.store.database import Database
from migration_engine.store.schema import budgets

b = budgets.c


@dataclass(frozen=True)
class BudgetRow:
    """One budget as the database holds it."""

    name: str
    next_free: datetime  # when its next free slot starts (in the past: idle since then)
    rate_per_s: float  # the rate of the last reservation
    reserved: int  # slots reserved since the row was created
    updated_at: datetime  # the last reservation


def reserve(db: Database, name: str, count: int, rate: float) -> float:
    """Reserve ``count`` slots of budget ``name`` at ``rate`` a second; where the block starts
    (epoch seconds on the store's clock). ``BudgetUnavailable`` when the database refuses or
    cannot be reached: the caller makes no call on it."""
    if count < 1 or not rate > 0:
        raise ValueError("a reservation needs at least one slot and a rate above 0")
    span = count / rate
    dialect_insert = sqlite.insert if db.is_sqlite else postgresql.insert
    try:
        with db.write(f"reserve {count} slot(s) of the {name} budget") as conn:
            when = db.clock.now()
            now = when.timestamp()
            now_sql: BindParameter[float] = literal(now, Double())
            stmt = (
                dialect_insert(budgets)
                .values(name=name, next_free_s=now + span, rate_per_s=rate, reserved=count, updated_at=when)
                .on_conflict_do_update(
                    index_elements=[b.name],
                    set_={
                        "next_free_s": case((b.next_free_s > now_sql, b.next_free_s), else_=now_sql)
                        + literal(span, Double()),
                        "rate_per_s": rate,
                        "reserved": b.reserved + count,
                        "updated_at": when,
                    },
                )
                .returning(b.next_free_s)
            )
            next_free: float = conn.execute(stmt).scalar_one()
    except StoreError as exc:
        raise BudgetUnavailable(str(exc)) from exc
    return next_free - span


def read_all(db: Database) -> list[BudgetRow]:
    """Every budget's row, by name."""
    with db.read("read the budgets") as conn:
        rows = conn.execute(select(budgets).order_by(b.name)).mappings().all()
    return [
        BudgetRow(
            name=row["name"],
            next_free=datetime.fromtimestamp(row["next_free_s"], UTC),
            rate_per_s=row["rate_per_s"],
            reserved=row["reserved"],
            updated_at=row["updated_at"],
        )
        for row in rows
    ]
