"""A small real HTTP server on loopback standing in for the gateway, for client and CLI tests.

Clients are tested over real sockets — status codes, SSE framing, dropped connections — rather
than with a mocked httpx, because that is where a client's bugs live. Each route answers with a
:class:`Reply` (JSON), an :class:`Sse` stream (which honours ``Last-Event-ID`` and can drop the
connection mid-event once), or :data:`DROP` (close the socket without answering).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .httpserver import LoopbackServer

__all__ = ["DROP", "FakeApi", "Reply", "Request", "Sse", "envelope", "serve"]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    raw: bytes | None = None
    content_type: str = "application/json"


@dataclass
class Sse:
    """An SSE answer: ``(seq, type, data)`` events, replayed after ``Last-Event-ID``.

    ``drop_after=n`` makes the first connection send n events, then half of the next one, then
    close the socket without ending the chunked body — a connection lost mid-stream.
    """

    events: list[tuple[int, str, dict[str, Any]]]
    drop_after: int | None = None
    aggregate_id: str = "run_test"
    connections: int = 0
    #: Called (in the server thread) after the last event, before the stream ends.
    then: Callable[[], None] | None = None


DROP = object()
Handler = Callable[[Request], Any]


def envelope(seq: int, type_: str, data: dict[str, Any], aggregate_id: str) -> dict[str, Any]:
    return {
        "id": f"evt_{seq:026d}",
        "type": type_,
        "version": 1,
        "time": f"2024-01-15T10:30:{seq % 60:02d}Z",
        "project": "demo",
        "aggregate": aggregate_id.split("_")[0],
        "aggregate_id": aggregate_id,
        "data": data,
    }


@dataclass
class FakeApi:
    url: str = ""
    routes: dict[tuple[str, str], Any] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)

    def route(self, method: str, path: str, answer: Any) -> None:
        """``answer``: a Reply, an Sse, DROP, a list of those (one per call) or a function of the Request."""
        self.routes[(method, path)] = answer

    def calls(self, method: str, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path == path]

    def answer(self, request: Request) -> Any:
        answer = self.routes.get((request.method, request.path))
        if answer is None:
            return Reply(404, {"error": {"code": "not_found", "message": f"no route {request.path}"}})
        if isinstance(answer, list):
            return answer.pop(0) if len(answer) > 1 else answer[0]
        if callable(answer) and not isinstance(answer, Reply | Sse):
            return answer(request)
        return answer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    api: FakeApi

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        self.api.requests.append(request)
        answer = self.api.answer(request)
        try:
            if answer is DROP:
                self._drop()
            elif isinstance(answer, Sse):
                self._sse(answer, request)
            else:
                self._reply(answer)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def _reply(self, reply: Reply) -> None:
        payload = reply.raw if reply.raw is not None else json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _drop(self) -> None:
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _sse(self, sse: Sse, request: Request) -> None:
        sse.connections += 1
        after = int(request.headers.get("last-event-id", "0") or 0)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        # It closes the connection after the stream: said so, a client never sends the next
        # request on it (which would then fail, a failure no test asked for).
        self.send_header("Connection", "close")
        self.end_headers()
        self._chunk(b": connected\n\n")
        sent = 0
        for seq, type_, data in sse.events:
            if seq <= after:
                continue
            frame = (
                f"id: {seq}\nevent: {type_}\n"
                # Raw UTF-8, as the gateway writes it (msgspec escapes no U+2028 and the like).
                f"data: {json.dumps(envelope(seq, type_, data, sse.aggregate_id), ensure_ascii=False)}\n\n"
            ).encode()
            if sse.drop_after is not None and sse.connections == 1 and sent == sse.drop_after:
                self._chunk(frame[: len(frame) // 2])
                self._drop()
                return
            self._chunk(frame)
            sent += 1
        if sse.then is not None:
            sse.then()
        self.wfile.write(b"0\r\n\r\n")
        self.close_connection = True

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


@contextlib.contextmanager
def serve() -> Iterator[FakeApi]:
    """A running fake API on a free loopback port (stopped on exit)."""
    fake = FakeApi()
    handler = type("Handler", (_Handler,), {"api": fake})
    server = LoopbackServer(("127.0.0.1", 0), handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
