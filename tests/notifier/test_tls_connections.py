"""An HTTPS connection is only ever used for the name its certificate was checked for: a pool
finds a kept connection by address, and a certificate is checked only when a connection is
opened, so a delivery to ``victim.test`` could ride a connection opened for ``attacker.test`` on
the same address (a CDN's, a load balancer's that routes by name) and reach the wrong server."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from crewyard.notifier.sender import Guard, Sender


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _certificates(folder: Path, host: str) -> tuple[Path, Path, Path]:
    """A test CA, and a certificate for ``host`` alone signed by it: (ca, cert, key) files."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def signed(subject: str, public: Any, *, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(subject))
            .issuer_name(_name("crewyard test CA"))
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        return builder.sign(ca_key, hashes.SHA256())

    files = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    pem = serialization.Encoding.PEM
    files[0].write_bytes(signed("crewyard test CA", ca_key.public_key(), ca=True).public_bytes(pem))
    files[1].write_bytes(signed(host, key.public_key(), ca=False).public_bytes(pem))
    files[2].write_bytes(_pem(key))
    return files


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the connection stays open for the next request

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.server.hosts.append(self.headers["Host"])  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def only_a(tmp_path: Path) -> Iterator[tuple[ThreadingHTTPServer, ssl.SSLContext]]:
    """A TLS server on loopback whose certificate names ``a.test`` only, and a client context
    trusting its CA."""
    ca, cert, key = _certificates(tmp_path, "a.test")
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    srv.socket = server_tls.wrap_socket(srv.socket, server_side=True)
    srv.hosts = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv, ssl.create_default_context(cafile=str(ca))
    srv.shutdown()
    srv.server_close()


class _Loopback:
    """Every name is 127.0.0.1."""

    async def resolve(self, host: str, port: int, timeout: float) -> list[Any]:
        return [ipaddress.ip_address("127.0.0.1")]

    def is_slow(self, host: str) -> bool:
        return False

    def close(self) -> None:
        pass


async def test_a_connection_checked_for_one_name_never_carries_a_delivery_for_another(
    only_a: tuple[ThreadingHTTPServer, ssl.SSLContext],
) -> None:
    srv, trusted = only_a
    port = srv.server_address[1]
    guard = Guard(policy="private", local_ports=set(), local_addresses=set(), platform_endpoints=set())
    sender = Sender(guard, 5.0, _Loopback(), tls=trusted)  # type: ignore[arg-type]
    try:
        first = await sender.post(f"https://a.test:{port}/hook", {}, b"{}")
        assert first.status_code == 200, first
        # Same address, another name, while a.test's connection is kept open: the certificate
        # (a.test's) does not name b.test, and the delivery must not go out on that connection.
        other = await sender.post(f"https://b.test:{port}/hook", {}, b"{}")
        assert other.status_code is None and "certificate" in (other.error or "").lower(), other
        again = await sender.post(f"https://a.test:{port}/hook", {}, b"{}")
        assert again.status_code == 200, again
    finally:
        await sender.close()
    assert srv.hosts == [f"a.test:{port}", f"a.test:{port}"]  # type: ignore[attr-defined]
