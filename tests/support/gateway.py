"""A gateway on loopback in front of the sandbox's identity server and the other providers'
handoff endpoint: it logs every POST it passes on, and may answer some itself with a fault.

The sandbox injects faults on its ``/api/`` routes only; the durability tests point
``psb.identity_url`` and ``handoff.endpoint`` here to fault the token request and the key
handoff too, and to see each handoff POST with a request id (``X-Request-Id``, which the engine
records in the step's ``api_call`` audit event) the way the sandbox's call log shows API calls.

A fault is one the receiver never saw, as a gateway or load balancer in front of it causes:
503 or 500 (``error``), 429 with ``Retry-After: 1`` (``throttled``), or a connection closed
without an answer (``dropped``). Each is drawn in that order from a ``random.Random`` of the
route (token or handoff) seeded with ``seed``, so the n-th token request meets the same fault in
every run whatever the threads do. ``shares`` may be changed while it runs.
"""

from __future__ import annotations

import json
import random
import threading
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN_PATH = "/connect/token"
_PASSED_HEADERS = ("content-type", "authorization")
_RETURNED_HEADERS = ("content-type", "cache-control", "retry-after")


class FaultGateway:
    """``with FaultGateway(target_url, error=..., throttle=..., drop=...) as gw:``; ``gw.url``."""

    def __init__(
        self, target_url: str, *, error: float = 0.0, throttle: float = 0.0, drop: float = 0.0, seed: int = 0
    ) -> None:
        self.target = target_url.rstrip("/")
        self.shares = {"throttled": throttle, "error": error, "dropped": drop}
        self._rngs = {route: random.Random(f"{seed}:{route}") for route in ("token", "handoff", "other")}
        self._lock = threading.Lock()
        self._log: list[dict[str, Any]] = []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                gateway._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                return None  # the token request's form holds the client secret: log nothing

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-gateway", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> FaultGateway:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def calls(self) -> list[dict[str, Any]]:
        """Every POST so far: seq, at, path, partyId (of a handoff), requestId, status (None:
        no answer), fault (None: passed on to the sandbox)."""
        with self._lock:
            return [dict(c) for c in self._log]

    def handoffs(self) -> list[dict[str, Any]]:
        return [c for c in self.calls() if c["path"].endswith("/handoff")]

    def tokens(self) -> list[dict[str, Any]]:
        return [c for c in self.calls() if c["path"] == TOKEN_PATH]

    def _decide(self, route: str) -> tuple[str | None, int]:
        """The fault for the next request of ``route`` (None: pass it on) and a 5xx status."""
        with self._lock:
            rng = self._rngs[route]
            for fault, share in self.shares.items():
                if share and rng.random() < share:
                    return fault, rng.choice((500, 503))
        return None, 0

    def _record(self, **call: Any) -> None:
        with self._lock:
            self._log.append({"seq": len(self._log) + 1, **call})

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        at = datetime.now(UTC).isoformat()
        length = int(handler.headers.get("content-length") or 0)
        body = handler.rfile.read(length)
        request_id = uuid.uuid4().hex
        handoff = handler.path.endswith("/handoff")
        party = _party_of(body) if handoff else None
        if len(body) < length:  # the client died mid-body (a killed worker): like the sandbox, 499, nothing passed on
            self._record(at=at, path=handler.path, partyId=party, requestId=request_id, fault=None, status=499)
            handler.close_connection = True
            return
        fault, error_status = self._decide("handoff" if handoff else "token" if handler.path == TOKEN_PATH else "other")
        call = {"at": at, "path": handler.path, "partyId": party, "requestId": request_id, "fault": fault}
        if fault == "dropped":
            self._record(**call, status=None)
            handler.close_connection = True  # no answer at all: the client sees the connection close
            return
        if fault is not None:
            status = 429 if fault == "throttled" else error_status
            self._record(**call, status=status)
            answer = json.dumps({"error": "temporarily_unavailable", "requestId": request_id}).encode()
            extra = {"retry-after": "1"} if status == 429 else {}
            _answer(handler, status, answer, {"content-type": "application/json", **extra}, request_id)
            return
        headers = {k: v for k in _PASSED_HEADERS if (v := handler.headers.get(k))}
        request = urllib.request.Request(self.target + handler.path, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, answer, got = response.status, response.read(), response.headers
        except urllib.error.HTTPError as exc:
            status, answer, got = exc.code, exc.read(), exc.headers
        self._record(**call, status=status)
        returned = {k: v for k in _RETURNED_HEADERS if (v := got.get(k))}
        _answer(handler, status, answer, returned, request_id)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        return None  # a killed worker resets its connections: nothing to report


def _party_of(body: bytes) -> str | None:
    try:
        value = json.loads(body).get("partyId")
    except (ValueError, AttributeError):
        return None
    return str(value) if value else None


def _answer(
    handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str], request_id: str
) -> None:
    handler.send_response(status)
    for name, value in {**headers, "x-request-id": request_id, "content-length": str(len(body))}.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)
