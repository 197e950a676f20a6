"""What a process that runs the worker sets for itself (the library leaves the interpreter alone).

The interpreter's switch interval is process-wide, so only the command that runs the worker
(`run`, the demo; the benchmark imports the same) may change it, and only while it serves.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

# CPython's default is 5 ms. A step thread whose answer has arrived waits for the GIL; with 32
# such threads, a recorder and the claim job, a 50 ms call took 64.5 ms on average in the
# benchmark (2 cores), 61.8 ms with 1 ms.
SERVE_SWITCH_INTERVAL_S = 0.001


@contextmanager
def serving_switch_interval(seconds: float = SERVE_SWITCH_INTERVAL_S) -> Iterator[None]:
    """Run the block with a switch interval of at most ``seconds``; the previous one comes back after."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(min(previous, seconds))
    try:
        yield
    finally:
        sys.setswitchinterval(previous)
