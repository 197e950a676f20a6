"""The sandbox in a separate process, so its CPU does not share the engine's GIL.

``SandboxProcess(latency_ms=50)`` starts ``python -m bench.sandbox_proc CONFIG_JSON``, which
serves ``SandboxServer(SandboxConfig(**config))`` on a free loopback port, prints its URL and
runs until its standard input closes. The parent reads the call log over HTTP.
"""

from __future__ import annotations

import json
import subprocess
import sys
from types import TracebackType
from typing import Any

import httpx


class SandboxProcess:
    """A sandbox served by a child process; ``url`` once started."""

    def __init__(self, **config: Any) -> None:
        self.config = {"seed": 0, "takeover_delay_s": 0.0, "propagation_delay_s": 0.0, **config}
        self._proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.http = httpx.Client(timeout=120.0)

    def start(self) -> SandboxProcess:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "bench.sandbox_proc", json.dumps(self.config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().strip()
        if not line.startswith("http://"):
            self.stop()
            raise RuntimeError(f"the sandbox process did not start (said {line!r})")
        self.url = line
        return self

    def calls(self, since: int = 0) -> list[dict[str, Any]]:
        """The API calls the sandbox received after sequence number ``since``."""
        answer = self.http.get(f"{self.url}/sandbox/calls", params={"since": since})
        answer.raise_for_status()
        calls: list[dict[str, Any]] = answer.json()
        return calls

    def last_seq(self) -> int:
        calls = self.calls()
        return int(calls[-1]["seq"]) if calls else 0

    def set_faults(self, **faults: Any) -> None:
        self.http.post(f"{self.url}/sandbox/faults", json=faults).raise_for_status()

    def stop(self) -> None:
        self.http.close()
        if self._proc is None:
            return
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._proc = None

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def main(argv: list[str]) -> int:
    from migration_engine.sandbox import SandboxConfig, SandboxServer

    config = SandboxConfig(**json.loads(argv[0]))
    with SandboxServer(config) as server:
        print(server.url, flush=True)
        sys.stdin.read()  # until the parent closes our standard input (or exits)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
