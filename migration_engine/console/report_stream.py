"""A report written as it is read: the writer (``report_formats.write``) runs in a thread and
hands its text over in chunks, so the first bytes of a batch of 100,000 parties go out at once
instead of after the whole document (seconds).

The writer writes into a ``_Pipe``; every ``CHUNK`` characters (and its first write, the
document's head) go to a queue of a few chunks, which the response's async iterator drains.
A client that goes away stops the writer at its next chunk; an error in the writer after the
first byte can only cut the download short (the status is sent): it is logged.
"""

from __future__ import annotations

import io
import logging
import queue
import threading
from collections.abc import AsyncIterator, Callable
from typing import IO, cast

from starlette.concurrency import run_in_threadpool

log = logging.getLogger("migration_engine.console.report_stream")

CHUNK = 64 * 1024
QUEUED = 8  # chunks waiting at most: the writer waits for a slow reader, memory stays bounded
_END = object()


class _Gone(Exception):
    """The reader went away: the writer stops."""


class _Pipe(io.TextIOBase):
    def __init__(self, chunks: queue.Queue[object], gone: threading.Event) -> None:
        self._chunks, self._gone = chunks, gone
        self._parts: list[str] = []
        self._size = 0
        self._sent = False

    def write(self, text: str) -> int:
        self._parts.append(text)
        self._size += len(text)
        if self._size >= CHUNK or not self._sent:
            self.flush()
        return len(text)

    def flush(self) -> None:
        if not self._parts:
            return
        data = "".join(self._parts).encode()
        self._parts, self._size, self._sent = [], 0, True
        self._put(data)

    def _put(self, item: object) -> None:
        while not self._gone.is_set():
            try:
                self._chunks.put(item, timeout=0.5)
                return
            except queue.Full:
                continue
        raise _Gone


def stream(write: Callable[[IO[str]], object]) -> AsyncIterator[bytes]:
    """The bytes ``write(out)`` writes, as they come."""
    chunks: queue.Queue[object] = queue.Queue(maxsize=QUEUED)
    gone = threading.Event()
    pipe = _Pipe(chunks, gone)

    def produce() -> None:
        try:
            write(cast(IO[str], pipe))
            pipe.flush()
        except _Gone:
            return
        except Exception as exc:  # the status is sent already: log it, end the download
            log.exception("a streamed report failed: %s", exc)
        try:
            pipe._put(_END)
        except _Gone:
            return

    threading.Thread(target=produce, name="report-stream", daemon=True).start()

    async def chunks_of() -> AsyncIterator[bytes]:
        try:
            while True:
                item = await run_in_threadpool(chunks.get)
                if item is _END:
                    return
                assert isinstance(item, bytes)
                yield item
        finally:
            gone.set()

    return chunks_of()
