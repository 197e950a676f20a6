"""Serving the sandbox: in a background thread on a free loopback port (tests, the demo), or in
the foreground (``peppol-migrate sandbox``)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from types import TracebackType

import uvicorn

from migration_engine.clock import Clock
from migration_engine.sandbox.app import create_app
from migration_engine.sandbox.config import SandboxConfig
from migration_engine.sandbox.dns import SandboxDns
from migration_engine.sandbox.faults import DropLogFilter, FaultState
from migration_engine.sandbox.model import SandboxModel

_filter = DropLogFilter()


def _quiet_drops() -> None:
    logger = logging.getLogger("uvicorn.error")
    if _filter not in logger.filters:
        logger.addFilter(_filter)


class SandboxServer:
    """The sandbox on ``127.0.0.1`` and a free port, served by uvicorn in a daemon thread.

    ``with SandboxServer(SandboxConfig(...), clock=ManualClock()) as sandbox:`` then use
    ``sandbox.url`` (PSB API and identity server both), ``sandbox.model`` and ``sandbox.faults``.
    The SML zone is served as DNS on its own free UDP port (``sandbox.dns_address``), the SMPs
    over HTTP at ``sandbox.smp_url(smp_id)``, the Directory stub at ``sandbox.directory_url``.
    """

    def __init__(self, config: SandboxConfig | None = None, clock: Clock | None = None) -> None:
        self.config = config or SandboxConfig()
        self.model = SandboxModel(self.config, clock)
        self.faults = FaultState(self.model.config, self.model.clock.monotonic)
        self.app = create_app(self.model, faults_state=self.faults)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.port = 0
        self.dns: SandboxDns | None = None

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("the sandbox server is not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def dns_address(self) -> str:
        """``127.0.0.1:PORT`` of the sandbox's DNS server, the form ``verify.dns_server`` takes."""
        if self.dns is None:
            raise RuntimeError("the sandbox server is not started")
        return self.dns.address

    @property
    def directory_url(self) -> str:
        """The base URL of the sandbox's Peppol Directory stub, the form ``network.directory_url`` takes."""
        return f"{self.url}/directory"

    def smp_url(self, smp_id: str) -> str:
        """The base URL of an SMP of the sandbox (``econnect`` or a provider's name)."""
        return f"{self.url}/smp/{smp_id}"

    def start(self, timeout_s: float = 10.0) -> SandboxServer:
        if self._thread is not None:
            return self
        _quiet_drops()
        # proto must be IPPROTO_TCP (not the default 0): asyncio sets TCP_NODELAY on accepted
        # sockets only then, and without it every response waits ~40 ms for a delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        sock.set_inheritable(True)
        self._sock = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
            backlog=1024,
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"sandbox:{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the sandbox server did not start")
            time.sleep(0.002)
        self.dns = SandboxDns(self.model, self.smp_url).start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.dns is not None:
            self.dns.stop()
            self.dns = None
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def serve(
    config: SandboxConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    clock: Clock | None = None,
    dns_port: int | None = None,
    model: SandboxModel | None = None,
) -> None:
    """Serve the sandbox in the foreground until interrupted (``peppol-migrate sandbox``);
    with ``dns_port``, its SML zone as DNS on that UDP port of ``host`` too. ``model``: a world
    prepared beforehand (parties registered from a file); ``config`` and ``clock`` are its own then."""
    _quiet_drops()
    model = model or SandboxModel(config or SandboxConfig(), clock)
    app = create_app(model)
    dns = None
    if dns_port is not None:
        dns = SandboxDns(model, lambda smp_id: f"http://{host}:{port}/smp/{smp_id}", host=host, port=dns_port).start()
    try:
        uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info", lifespan="off")).run()
    finally:
        if dns is not None:
            dns.stop()
