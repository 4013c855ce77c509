"""A webhook receiver on loopback for tests: records every request and answers as scripted."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

import msgspec

from .httpserver import LoopbackServer

#: (request number for this delivery id, starting at 1) → (status, seconds to wait before answering).
Script = Callable[[int, dict[str, str], bytes], tuple[int, float]]


class Received(msgspec.Struct, kw_only=True):
    at: float
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    answered: bool = False


class Receiver:
    def __init__(self, script: Script | None = None) -> None:
        self.script: Script = script or (lambda n, h, b: (200, 0.0))
        self.requests: list[Received] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with owner.lock:
                    n = 1 + sum(
                        1 for r in owner.requests if r.headers.get("webhook-id") == headers.get("webhook-id")
                    )
                    status, delay = owner.script(n, headers, body)
                    rec = Received(
                        at=time.monotonic(), path=self.path, headers=headers, body=body, status=status
                    )
                    owner.requests.append(rec)
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("content-length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                    rec.answered = True
                except OSError:
                    pass  # the sender gave up (timeout) and closed the connection

            def log_message(self, *args: Any) -> None:
                pass

        self.server = LoopbackServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.requests)

    def wait_for(self, condition: Callable[[list[Received]], bool], timeout: float = 60.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.snapshot()
            if condition(got):
                return got
            time.sleep(0.05)
        raise AssertionError(
            f"receiver condition not met after {timeout}s; got {len(self.snapshot())} requests"
        )
