"""Operator actions racing a step: a gate that holds a worker's step while the test acts, and
the two records to compare call for call (the PSB's call log and the audit's api_call events)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote


class StepGate:
    """Wraps the worker's ``step_for``: the first step run (in ``state``, when given) waits at its
    start for ``release`` (its lease is live meanwhile: it is in flight); other steps run at once."""

    def __init__(self, real: Callable[..., Any], state: Any = None) -> None:
        self.real = real
        self.state = state
        self.started = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._taken = False

    def __call__(self, direction: Any, state: Any) -> Any:
        step = self.real(direction, state)
        if step is None or (self.state is not None and state != self.state):
            return step

        def held(ctx: Any, record: Any) -> Any:
            with self._lock:
                first, self._taken = not self._taken, True
            if first:
                self.started.set()
                assert self.release.wait(30), "the test never released the step"
            return step(ctx, record)

        return held


def audited_calls(events: list[Any]) -> list[tuple[str, str, int | None]]:
    """(method, path, status) of a migration's api_call events to the PSB's API, in order
    (AuditEvent or `show --json` dicts); the token requests, to the identity server, left out."""
    rows = [e if isinstance(e, dict) else e.__dict__ for e in events]
    return [
        (e["http_method"], unquote(e["http_path"]), e["http_status"])
        for e in rows
        if e["kind"] == "api_call" and e["http_path"].startswith("/api/")
    ]


def psb_calls(model: Any, party: str) -> list[tuple[str, str, int | None]]:
    """(method, path, status) of the API calls the sandbox received for ``party``, in order."""
    return [(c["method"], unquote(c["path"]), c["status"]) for c in model.calls(party)]


def tick_until_held(worker: Any, gate: StepGate, deadline_s: float = 30) -> None:
    """Claim (the steps before the held one run and are recorded) until the gate holds a step."""
    deadline = time.monotonic() + deadline_s
    while not gate.started.is_set():
        worker.tick()
        assert time.monotonic() < deadline, "the step to hold never started"
        gate.started.wait(0.02)  # an event wait, not a sleep: returns as soon as the step starts
