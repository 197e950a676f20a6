"""Report fixtures shared by the report, HTML and status-view tests: records, a summary, rows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from migration_engine.backoffice import batch_report
from migration_engine.backoffice.batch_report import row_dict
from migration_engine.machine import Direction, State, states
from migration_engine.store import BatchInfo, MigrationRecord
from tests.support.records import migration_record

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
EVIL = '<script>alert("x")</script>&amp;'


def record(i: int = 1, **overrides) -> MigrationRecord:
    fields: dict[str, Any] = dict(
        id=i,
        party_id=f"0106:{10000000 + i}",
        state=State.COMPLETED,
        version=7,
        name=f"Party {i}",
        key_ciphertext="gAAAA-ciphertext-that-must-not-show",
        created_at=T0,
        updated_at=T0 + timedelta(minutes=5),
        completed_at=T0 + timedelta(minutes=5),
    )
    return migration_record(**(fields | overrides))


def summary(**overrides) -> dict:
    by_direction = {d.value: {s.value: 0 for s in states(d)} for d in Direction}
    by_direction["to-econnect"].update(completed=3, key_rejected=1)
    by_direction["from-econnect"].update(completed=2, needs_attention=1, cancelled=1)
    data = {
        "batch": "spring",
        "total": 8,
        "completed": 5,
        "percent_done": 75.0,
        "throughput_last_hour": 5,
        "paused": 0,
        "by_direction": by_direction,
        "needs_attention": 1,
        "key_rejected": 1,
        "oldest_waiting": {"party_id": "0106:10000001", "state": "key_rejected", "since": T0.isoformat()},
        "errors_by_code": {"API400": 1, "API404": 1},
    }
    data.update(overrides)
    return data


class FakeReport(batch_report.BatchReport):
    """A ``BatchReport`` with given rows and summary, no store: what the writers read of one."""

    def __init__(self, rows: list[dict], **summary_overrides) -> None:
        self.batch = BatchInfo(id=1, name="spring", created_at=T0, source="/data/spring.csv")
        self.generated_at = T0 + timedelta(hours=2)
        self.summary = summary(**summary_overrides)
        self._rows = rows

    def rows(self) -> Iterator[dict[str, Any]]:
        yield from self._rows


ROWS = [
    row_dict(record(1), 0),
    row_dict(record(2, state=State.KEY_REJECTED, last_error="Migration failed", last_error_code="API400"), 2),
    row_dict(
        record(
            3,
            direction=Direction.FROM_ECONNECT,
            state=State.NEEDS_ATTENTION,
            failed_state=State.REQUESTED,
            name='=HYPERLINK("http://evil")',
            paused=True,
            completed_at=None,
        ),
        0,
    ),
    row_dict(record(4, name=EVIL, state=State.CANCELLED), 0),
]
