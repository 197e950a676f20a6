"""The worker's opt-in HTTP endpoints for an orchestrator and for Prometheus.

    GET /healthz   200 while the process serves: a supervisor restarts it when this stops answering
    GET /readyz    200 when the database answers, its schema is current and the circuit is closed;
                   503 with a JSON reason otherwise (an orchestrator or a load balancer keeps
                   its eyes on this one; nothing routes to a worker, so it is mostly for alerts)
    GET /metrics   the worker's registry in Prometheus' text format

Served by the standard library's ``ThreadingHTTPServer`` on a daemon thread: the endpoints
are three small GETs, and the sandbox's Starlette and uvicorn are kept out of a production
worker (an import contract). One thread per request, so a readiness check that waits for an
unreachable database does not hold up ``/healthz`` or ``/metrics``. Bound to ``127.0.0.1`` by
default: the figures name no party, but nothing here authenticates a caller, so exposing the
port beyond the host is a deliberate choice (``--metrics-host``).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from migration_engine.errors import ConfigError, InputError, SchemaOutOfDate, StoreError
from migration_engine.store import Store

log = logging.getLogger("migration_engine.cli.service")

DEFAULT_HOST = "127.0.0.1"


@dataclass(frozen=True)
class Readiness:
    """The answer of ``/readyz``: ready, or which check failed and why."""

    ready: bool
    check: str = ""  # database | schema | circuit, when not ready
    reason: str = ""

    def as_json(self) -> dict[str, Any]:
        if self.ready:
            return {"ready": True}
        return {"ready": False, "check": self.check, "reason": self.reason}


@dataclass(frozen=True)
class WorkerReadiness:
    """A worker is ready when it could do its work now: the database answers, the schema is the
    one this code expects (an old worker after `db upgrade`, or a new one before it, would
    fail every write) and its circuit is closed (open or probing: the PSB is failing and the
    worker claims nothing)."""

    store: Store
    circuit: Callable[[], str]

    def __call__(self) -> Readiness:
        try:
            self.store.check_schema()
        except SchemaOutOfDate as exc:
            return Readiness(False, "schema", str(exc))
        except (StoreError, ConfigError) as exc:  # a database that cannot be reached reads as misconfigured
            return Readiness(False, "database", str(exc))
        state = self.circuit()
        if state != "closed":
            return Readiness(False, "circuit", f"the circuit breaker is {state}: claiming is paused")
        return Readiness(True)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._send(200, "application/json", b'{"alive": true}')
        elif path == "/readyz":
            try:
                answer = self.server.readiness()
            except Exception as exc:  # a bug in a check must read as not ready, not as a dead process
                log.exception("readiness check failed")
                answer = Readiness(False, "error", f"{type(exc).__name__}: {exc}")
            body = json.dumps(answer.as_json()).encode("utf-8")
            self._send(200 if answer.ready else 503, "application/json", body)
        elif path == "/metrics":
            self._send(200, CONTENT_TYPE_LATEST, generate_latest(self.server.registry))
        else:
            self._send(404, "application/json", b'{"error": "not found: try /healthz, /readyz or /metrics"}')

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds are not worth a log line each (the default writes to stderr)."""
        log.debug("service: " + format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], registry: CollectorRegistry, readiness: Callable[[], Readiness]
    ) -> None:
        super().__init__(address, _Handler)
        self.registry = registry
        self.readiness = readiness


class ServiceServer:
    """``/healthz``, ``/readyz`` and ``/metrics`` on ``host:port`` (port 0: a free one), on a
    daemon thread between ``start`` and ``stop`` (or as a context manager)."""

    def __init__(
        self,
        *,
        registry: CollectorRegistry,
        readiness: Callable[[], Readiness],
        host: str = DEFAULT_HOST,
        port: int = 0,
    ) -> None:
        self._registry = registry
        self._readiness = readiness
        self.host = host
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the service is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> ServiceServer:
        """Bind and serve; a taken port or a bad host is bad input (exit 2), said before any claim."""
        if self._server is not None:
            return self
        try:
            self._server = _Server((self.host, self._port), self._registry, self._readiness)
        except OSError as exc:
            raise InputError(f"metrics: cannot serve on {self.host}:{self._port}: {exc.strerror or exc}") from None
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="service", daemon=True
        )
        self._thread.start()
        log.info(f"serving /healthz, /readyz and /metrics on {self.url}", extra={"action": "service_started"})
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5.0)
        self._server = self._thread = None

    def __enter__(self) -> ServiceServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@contextmanager
def serving(
    registry: CollectorRegistry,
    readiness: Callable[[], Readiness],
    *,
    port: int | None,
    host: str = DEFAULT_HOST,
) -> Iterator[ServiceServer | None]:
    """The endpoints for the block when ``port`` is set (opt-in: None or 0 serves nothing)."""
    if not port:
        yield None
        return
    with ServiceServer(registry=registry, readiness=readiness, host=host, port=port) as server:
        yield server
