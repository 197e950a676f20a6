"""`status` on screen: the lines, and `--watch` on and off a terminal."""

from __future__ import annotations

import io
import threading

from migration_engine.cli import status_view
from tests.support.reports import T0, summary

# ---- status on screen ------------------------------------------------------------------


def test_status_lines_show_only_states_in_use():
    lines = status_view.status_lines(summary())
    assert lines[0].startswith("batch: spring   total 8   done 75.0%")
    assert "completed=3  key_rejected=1" in lines[1] and "requested" not in lines[1]
    assert lines[-1] == "  errors: API400=1  API404=1"


class Ticks:
    """A fetch that changes once, then sets ``stop`` after a few calls (no sleeping: interval 0)."""

    def __init__(self, stop: threading.Event, calls: int) -> None:
        self.stop, self.calls, self.n = stop, calls, 0

    def __call__(self) -> dict:
        self.n += 1
        if self.n >= self.calls:
            self.stop.set()
        return summary(paused=1 if self.n >= 2 else 0)


def test_watch_off_a_terminal_prints_only_changes():
    stop, out = threading.Event(), io.StringIO()
    status_view.watch(Ticks(stop, 4), interval_s=0, tty=False, out=out, stop=stop, now=lambda: T0)
    blocks = out.getvalue().split("-- ")[1:]
    assert len(blocks) == 2  # the first status, then the one change; two repeats not printed
    assert "paused 0" in blocks[0] and "paused 1" in blocks[1]


def test_watch_on_a_terminal_draws_a_live_table():
    stop, out = threading.Event(), io.StringIO()
    status_view.watch(Ticks(stop, 3), interval_s=0, tty=True, out=out, stop=stop, now=lambda: T0)
    text = out.getvalue()
    assert "to-econnect" in text and "key_rejected" in text and "Ctrl-C" in text
