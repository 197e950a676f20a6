"""An SMTP receiver over loopback for the alerts' tests: just enough SMTP (EHLO/HELO, MAIL FROM,
RCPT TO, DATA, RSET, NOOP, QUIT; no TLS, no AUTH), the messages it accepted, and three moods:
down (nothing listening, so a connection is refused), failing (451 to DATA: a temporary
refusal, nothing recorded) or up."""

from __future__ import annotations

import email
import email.policy
import socket
import socketserver
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage


@dataclass
class Mail:
    """One message accepted: the envelope and the parsed message."""

    mail_from: str
    rcpt_to: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def body(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        assert part is not None
        return str(part.get_content())


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, port: int, receiver: SmtpReceiver) -> None:
        self.receiver = receiver
        super().__init__(("127.0.0.1", port), _Session)


def _address(arg: str) -> str:
    """``FROM:<a@b>`` -> ``a@b`` (parameters after the address are ignored)."""
    value = arg.partition(":")[2].strip()
    if value.startswith("<"):
        value = value[1 : value.find(">")]
    return value.split(" ", 1)[0]


class _Session(socketserver.StreamRequestHandler):
    server: _Server

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode("ascii") + b"\r\n")
        self.wfile.flush()

    def handle(self) -> None:
        receiver = self.server.receiver
        mail_from: str | None = None
        rcpt_to: list[str] = []
        self.reply("220 127.0.0.1 test SMTP receiver")
        while True:
            line = self.rfile.readline()
            if not line:
                return
            verb, _, arg = line.decode("ascii", "replace").rstrip("\r\n").partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                self.reply("250-127.0.0.1")
                self.reply("250 8BITMIME")
            elif verb == "HELO":
                self.reply("250 127.0.0.1")
            elif verb == "MAIL" and arg.upper().startswith("FROM:"):
                mail_from, rcpt_to = _address(arg), []
                self.reply("250 OK")
            elif verb == "RCPT" and arg.upper().startswith("TO:"):
                if mail_from is None:
                    self.reply("503 MAIL first")
                    continue
                rcpt_to.append(_address(arg))
                self.reply("250 OK")
            elif verb == "DATA":
                if mail_from is None or not rcpt_to:
                    self.reply("503 MAIL and RCPT first")
                    continue
                self.reply("354 end with <CRLF>.<CRLF>")
                raw = self._read_data()
                if raw is None:
                    return
                with receiver.lock:
                    receiver.attempts += 1
                    if receiver.failing_now:
                        self.reply("451 try again later")
                    else:
                        receiver.accepted.append(Mail(mail_from, list(rcpt_to), raw))
                        self.reply("250 OK queued")
                mail_from, rcpt_to = None, []
            elif verb == "RSET":
                mail_from, rcpt_to = None, []
                self.reply("250 OK")
            elif verb == "NOOP":
                self.reply("250 OK")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 not implemented")

    def _read_data(self) -> bytes | None:
        lines: list[bytes] = []
        while True:
            line = self.rfile.readline()
            if not line:
                return None
            if line in (b".\r\n", b".\n"):
                return b"".join(lines)
            lines.append(line[1:] if line.startswith(b"..") else line)  # dot-unstuffing


@dataclass
class SmtpReceiver:
    """``down()`` closes the socket (refused), ``failing()`` answers 451 to DATA, ``up()`` accepts."""

    port: int = 0
    accepted: list[Mail] = field(default_factory=list)
    attempts: int = 0  # messages sent to it (DATA completed), accepted or not
    failing_now: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    _server: _Server | None = None

    def __post_init__(self) -> None:
        if not self.port:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = s.getsockname()[1]

    def _serve(self) -> None:
        if self._server is not None:
            return
        self._server = _Server(self.port, self)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def failing(self) -> None:
        self.failing_now = True
        self._serve()

    def up(self) -> None:
        self.failing_now = False
        self._serve()
