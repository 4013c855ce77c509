"""A TLS failure says what it is: https:// to a server that speaks plain HTTP, or a certificate
this machine does not trust. Both read "cannot reach the crewyard API … — is `crewyard up`
running?", about a server that was up and answering."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from crewyard.testing.fakeapi import FakeApi


@pytest.fixture
def self_signed_api(tmp_path: Path) -> Iterator[str]:
    """An HTTPS server on loopback whose certificate no CA this machine trusts signed."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_https_to_a_plain_http_server_says_so(api: FakeApi, run_cli) -> None:
    url = api.url.replace("http://", "https://")

    result = run_cli("runs", "list", "--api", url)

    assert result.exit_code == 1
    assert result.stderr == (
        f"error: no TLS connection to the crewyard API at {url} (WRONG_VERSION_NUMBER): "
        "does it serve https? (use http:// for a plain one)\n"
    )


def test_an_untrusted_certificate_says_so(self_signed_api: str, run_cli) -> None:
    result = run_cli("runs", "list", "--api", self_signed_api)

    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"error: the crewyard API at {self_signed_api} has a certificate this machine does not trust ("
    )
    assert result.stderr.endswith("); if its CA is your own, set SSL_CERT_FILE to it\n")
