"""A deliberately small HTTP/1.1 client on asyncio streams: keep-alive GETs and SSE streams.

Why not httpx here: the load generator runs in the bench process on the same two cores as the
platform, and at 1,000 SSE clients (or tens of thousands of requests) httpx's per-request and
per-line cost in the client would be measured as the gateway's latency and throughput. This
client does the minimum (status line, headers, Content-Length or chunked body, SSE lines), so
the figures describe the server. httpx is still used for the few control calls (deploy, invoke).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

from crewyard.errors import CrewyardError


class HttpError(CrewyardError, RuntimeError):
    pass


def host_port(base_url: str) -> tuple[str, int]:
    parts = urlsplit(base_url)
    return parts.hostname or "127.0.0.1", parts.port or 80


async def _head(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes]]:
    line = await reader.readline()
    if not line:
        raise HttpError("connection closed before a response")
    status = int(line.split(None, 2)[1])
    headers: dict[bytes, bytes] = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            return status, headers
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()


async def _chunks(reader: asyncio.StreamReader, headers: dict[bytes, bytes]) -> AsyncIterator[bytes]:
    """The body as it arrives (de-chunked), until its end."""
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        while True:
            line = await reader.readline()
            if not line:
                raise HttpError("the server closed the connection in the middle of the response")
            size = int(line.split(b";", 1)[0], 16)
            if size == 0:
                await reader.readline()  # the empty trailer
                return
            yield await reader.readexactly(size)
            await reader.readexactly(2)
    elif b"content-length" in headers:
        yield await reader.readexactly(int(headers[b"content-length"]))
    else:
        while chunk := await reader.read(65536):
            yield chunk


def _header_lines(headers: dict[str, str] | None) -> str:
    """Request header lines (e.g. the API key's ``Authorization``), each ending in CRLF."""
    return "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())


class Connection:
    """One keep-alive connection; ``get`` sends a request and reads the whole response."""

    def __init__(self, base_url: str, headers: dict[str, str] | None = None) -> None:
        self.host, self.port = host_port(base_url)
        self.extra = _header_lines(headers)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> Connection:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._writer is not None:
            self._writer.close()

    async def get(self, path: str) -> tuple[int, bytes]:
        assert self._reader is not None and self._writer is not None
        self._writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n{self.extra}\r\n".encode())
        status, headers = await _head(self._reader)
        body = b"".join([chunk async for chunk in _chunks(self._reader, headers)])
        if headers.get(b"connection", b"").lower() == b"close":
            raise HttpError("server closed the keep-alive connection")
        return status, body


#: on_event(received_at, event_type, data) — received_at is time.time() when its chunk arrived.
OnEvent = Callable[[float, bytes, bytes], None]


class _SseProtocol(asyncio.Protocol):
    """One SSE response parsed as its bytes arrive (a push parser: no coroutine per chunk, so
    1,000 clients in the bench cost the machine as little as they can). The receipt time of an
    event is when its bytes reached the process, not when a busy event loop got to them."""

    def __init__(self, on_event: OnEvent, connected: Callable[[], None] | None) -> None:
        self.on_event, self.connected = on_event, connected
        self.done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.buffer = b""
        self.head: tuple[int, dict[bytes, bytes]] | None = None
        self.chunked = False
        self.chunk_left = -1  # bytes of the current chunk still to come (-1: its size line is next)
        self.lines = b""  # SSE text not yet ending in a newline
        self.event = self.data = b""
        self.count = 0
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        received = time.time()
        self.buffer += data
        try:
            if self.head is None and not self._read_head():
                return
            self._read_body(received)
        except (ValueError, IndexError) as exc:
            self._end(HttpError(f"malformed response: {exc}"))
        except Exception as exc:  # HttpError, or on_event's own: the caller's to see
            self._end(exc)

    def _read_head(self) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        status_line, *lines = self.buffer[:end].split(b"\r\n")
        self.buffer = self.buffer[end + 4 :]
        headers = {}
        for line in lines:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        self.head = int(status_line.split(None, 2)[1]), headers
        self.chunked = headers.get(b"transfer-encoding", b"").lower() == b"chunked"
        if self.head[0] != 200:
            raise HttpError(f"HTTP {self.head[0]}")
        if self.connected is not None:
            self.connected()
        return True

    def _read_body(self, received: float) -> None:
        if not self.chunked:
            body, self.buffer = self.buffer, b""
            self._sse(body, received)
            return
        while True:
            if self.chunk_left < 0:
                line_end = self.buffer.find(b"\r\n")
                if line_end < 0:
                    return
                self.chunk_left = int(self.buffer[:line_end].split(b";", 1)[0], 16)
                self.buffer = self.buffer[line_end + 2 :]
                if self.chunk_left == 0:
                    self._end(None)
                    return
            if len(self.buffer) < self.chunk_left + 2:
                return
            chunk = self.buffer[: self.chunk_left]
            self.buffer = self.buffer[self.chunk_left + 2 :]
            self.chunk_left = -1
            self._sse(chunk, received)

    def _sse(self, text: bytes, received: float) -> None:
        *lines, self.lines = (self.lines + text).split(b"\n")
        for line in lines:
            line = line.rstrip(b"\r")
            if not line:
                if self.data:
                    self.on_event(received, self.event, self.data)
                    self.count += 1
                self.event = self.data = b""
            elif line.startswith(b"data:"):
                self.data = line[5:].lstrip()
            elif line.startswith(b"event:"):
                self.event = line[6:].strip()

    def _end(self, error: Exception | None) -> None:
        if self.transport is not None:
            self.transport.close()
        if not self.done.done():
            if error is None:
                self.done.set_result(self.count)
            else:
                self.done.set_exception(error)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.head is None:
            self._end(HttpError("connection closed before a response"))
        elif self.chunked:
            self._end(HttpError("the server closed the connection in the middle of the response"))
        else:
            self._end(None)


async def sse(
    base_url: str,
    path: str,
    on_event: OnEvent,
    *,
    connected: Callable[[], None] | None = None,
    headers: dict[str, str] | None = None,
    json_body: bytes | None = None,
) -> int:
    """Follow one SSE stream until the server ends it; returns the number of events read.
    With ``json_body`` the stream is the answer to a POST of it (e.g. a run created streaming)."""
    host, port = host_port(base_url)
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_connection(lambda: _SseProtocol(on_event, connected), host, port)
    try:
        method = "GET" if json_body is None else "POST"
        head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n"
        if json_body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(json_body)}\r\n"
        transport.write(f"{head}{_header_lines(headers)}\r\n".encode() + (json_body or b""))
        try:
            return await protocol.done
        except HttpError as exc:
            raise HttpError(f"{method} {path}: {exc}") from None
    finally:
        transport.close()
