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
    reader, writer = await asyncio.open_connection(host, port)
    try:
        method = "GET" if json_body is None else "POST"
        head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n"
        if json_body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(json_body)}\r\n"
        writer.write(f"{head}{_header_lines(headers)}\r\n".encode() + (json_body or b""))
        status, answer = await _head(reader)
        if status != 200:
            raise HttpError(f"{method} {path}: HTTP {status}")
        if connected is not None:
            connected()
        count = 0
        event = data = b""
        pending = b""
        async for chunk in _chunks(reader, answer):
            received = time.time()
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                line = line.rstrip(b"\r")
                if not line:
                    if data:
                        on_event(received, event, data)
                        count += 1
                    event = data = b""
                elif line.startswith(b"data:"):
                    data = line[5:].lstrip()
                elif line.startswith(b"event:"):
                    event = line[6:].strip()
        return count
    finally:
        writer.close()
