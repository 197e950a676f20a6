"""Recording the steps' outcomes on one thread, several changes per transaction (group commit).

    step threads (worker.concurrency) ── decide: PSB calls ──► Change ──► queue
    recorder thread ── takes what waits (up to max_batch) ──► store.apply_many: one transaction,
                       a compare-and-set with its audit events per change (a failed one still
                       appends its api_call events; a pending operator request on a moved row
                       is applied right after, in the same transaction) ──► on_recorded(batch)

A step's thread is free for the next step as soon as its calls are done, so the PSB sees
``worker.concurrency`` calls in flight, not fewer while outcomes wait for the database; the
database sees one writer per worker process; one commit serves every change that waited.
Each change still succeeds or is discarded on its own (its CAS); a database error on a batch
is retried change by change, so one bad change cannot sink the others.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence

from migration_engine.store import Change, MigrationRecord

log = logging.getLogger("migration_engine.engine.recorder")

ApplyMany = Callable[[Sequence[Change]], list[MigrationRecord | None]]
Recorded = tuple[MigrationRecord, MigrationRecord | None, BaseException | None]
"""A step's record and its outcome: stored (the migration as it now is), stale (None) or failed."""
OnRecorded = Callable[[list[Recorded]], None]
_Item = tuple[MigrationRecord, Change]


class Recorder:
    """One worker's recorder thread, started with the first change; ``close`` drains and stops it."""

    def __init__(self, *, apply_many: ApplyMany, on_recorded: OnRecorded, max_batch: int = 64) -> None:
        self._apply_many = apply_many
        self._on_recorded = on_recorded
        self._max_batch = max(1, max_batch)
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._pending = 0  # submitted, not yet reported
        self._pending_lock = threading.Lock()

    def pending(self) -> int:
        """How many outcomes wait to be recorded (their steps' threads are free already)."""
        return self._pending

    def submit(self, record: MigrationRecord, change: Change) -> None:
        """Queue ``change`` (the outcome of ``record``'s step); ``on_recorded`` reports it, with the
        others recorded in the same transaction."""
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._loop, name="recorder", daemon=True)
                    self._thread.start()
        with self._pending_lock:
            self._pending += 1
        self._queue.put((record, change))

    def close(self) -> None:
        """Record everything queued, then stop the thread."""
        with self._start_lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch, stop = [item], False
            while len(batch) < self._max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            self._record(batch)
            if stop:
                return

    def _record(self, batch: list[_Item]) -> None:
        try:
            results = self._apply_many([change for _, change in batch])
        except Exception as exc:  # a database error: nothing of the batch is stored
            if len(batch) > 1:
                for item in batch:
                    self._record([item])
                return
            self._report([(batch[0][0], None, exc)])
            return
        self._report([(record, applied, None) for (record, _), applied in zip(batch, results, strict=True)])

    def _report(self, results: list[Recorded]) -> None:
        with self._pending_lock:
            self._pending -= len(results)
        try:
            self._on_recorded(results)
        except Exception:  # the callback's own bug must not stop the recording of the others
            log.exception("reporting recorded outcomes failed", extra={"action": "record_failed"})
