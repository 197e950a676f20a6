"""TLS verification is on by default: the PSB client refuses a server whose certificate it
cannot verify (a self-signed one here), and says why; only verify_tls = false lets it through."""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import json
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from migration_engine.errors import PsbTransientError
from migration_engine.psb.client import PsbClient
from migration_engine.settings import Settings


class TokenHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.dumps({"access_token": "t" * 32, "expires_in": 3600}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.send_response(404)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def self_signed_server(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), TokenHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def client(url: str, **kwargs: object) -> PsbClient:
    return PsbClient(base_url=url, identity_url=url, client_id="c", client_secret="s", **kwargs)  # type: ignore[arg-type]


def test_an_unverifiable_certificate_is_refused_by_default(self_signed_server):
    assert Settings().psb.verify_tls is True
    with client(self_signed_server) as psb, pytest.raises(PsbTransientError, match="CERTIFICATE_VERIFY_FAILED"):
        psb.get_party_config("0106:12345678")
    with client(self_signed_server, verify_tls=False) as psb:
        assert psb.get_party_config("0106:12345678") is None  # reached the server: 404, no config
