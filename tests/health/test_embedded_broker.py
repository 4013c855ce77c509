"""The embedded broker's start explains itself: what its readiness probe saw last, and its log."""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from crewyard.natsserver import EmbeddedNats


@pytest.fixture
def idle_process() -> Iterator[subprocess.Popen[bytes]]:
    """Stands in for a launched nats-server (alive, so the broker is 'starting')."""
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


def _as_launched(tmp_path: Path, proc: subprocess.Popen[bytes], monitoring: str | None) -> EmbeddedNats:
    broker = EmbeddedNats(tmp_path)
    broker.dir.mkdir(parents=True)
    broker.proc = proc
    if monitoring is not None:
        ports = {"nats": ["nats://127.0.0.1:4222"], "monitoring": [monitoring]}
        (broker.dir / f"nats-server_{proc.pid}.ports").write_text(json.dumps(ports))
    return broker


def test_a_broker_without_its_ports_file_is_starting(tmp_path: Path, idle_process):
    broker = _as_launched(tmp_path, idle_process, None)
    assert broker.ready() is False
    assert "ports file" in broker.seen


def test_a_monitoring_endpoint_that_never_answers_is_named(tmp_path: Path, idle_process):
    with socket.socket() as silent:  # accepts connections (the kernel does) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        broker = _as_launched(tmp_path, idle_process, url)
        broker.probe_timeout = 0.3
        assert broker.ready() is False
    assert broker.seen.startswith(f"{url}/healthz?js-enabled-only=true did not answer")
    assert "timed out" in broker.seen


class _Unavailable(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"status":"unavailable","error":"JetStream not enabled"}'
        self.send_response(503)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_server_whose_jetstream_is_not_up_yet_says_why(tmp_path: Path, idle_process):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        broker = _as_launched(tmp_path, idle_process, f"http://127.0.0.1:{server.server_address[1]}")
        assert broker.ready() is False
    finally:
        server.shutdown()
        server.server_close()
    assert "answered 503" in broker.seen
    assert "JetStream not enabled" in broker.seen


def test_a_real_broker_is_ready_and_its_log_is_readable(tmp_path: Path):
    broker = EmbeddedNats(tmp_path)
    broker.start()
    try:
        assert "'status': 'ok'" in broker.seen
        assert "Server is ready" in broker.log_tail()
    finally:
        broker.stop()
