"""What a connection may cost before a request of it is answered (``crewyard.httplimits``), on a
real uvicorn server (a health listener): heads that never end, heads too large, too many
connections from one address, and bytes that are not HTTP — each answered in the API's error
shape and closed, while ordinary requests (bodies in the same piece as their head included) pass."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest

from crewyard.health import HealthListener, Reply, json_reply
from crewyard.httplimits import LOOPBACK, ConnectionLimits, counted_as, proxies

TIMEOUT = 0.5


async def _ok() -> Reply:
    return json_reply(200, {"status": "ok"})


@pytest.fixture
async def limits() -> ConnectionLimits:
    return ConnectionLimits(head_timeout_s=TIMEOUT, per_address=2, exempt=())


@pytest.fixture
async def server(limits: ConnectionLimits) -> AsyncIterator[tuple[str, int]]:
    listener = HealthListener({"/healthz": _ok}, host="127.0.0.1", port=0, limits=limits)
    await listener.start()
    try:
        yield "127.0.0.1", listener.port
    finally:
        await listener.stop()


async def _open(server: tuple[str, int]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(*server)


async def _response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One response: status, headers, body (Content-Length)."""
    status = int((await asyncio.wait_for(reader.readline(), 10)).split()[1])
    headers = {}
    while (line := await asyncio.wait_for(reader.readline(), 10)) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 10)
    return status, headers, body


async def _refused(reader: asyncio.StreamReader, status: int, code: str) -> str:
    """The refusal's message, after checking its status, shape and that the connection closed."""
    got, headers, body = await _response(reader)
    assert got == status, body
    assert headers["content-type"] == "application/json" and headers["connection"] == "close"
    error = json.loads(body)["error"]
    assert error["code"] == code, error
    assert await asyncio.wait_for(reader.read(), 10) == b""  # and the connection is closed
    return str(error["message"])


GET = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


async def test_a_connection_that_sends_nothing_is_closed_after_the_head_timeout(server: tuple[str, int]):
    started = time.monotonic()  # before the server's timer starts: the lower bound holds however late
    reader, writer = await _open(server)
    message = await _refused(reader, 408, "request_timeout")
    assert TIMEOUT <= time.monotonic() - started < 10
    assert "0.5 s" in message
    writer.close()


async def test_headers_trickled_a_byte_at_a_time_do_not_hold_the_connection(server: tuple[str, int]):
    reader, writer = await _open(server)
    writer.write(b"GET /healthz HTTP/1.1\r\n")

    async def trickle() -> None:
        while not writer.is_closing():
            writer.write(b"X")  # one byte of a header name that never ends
            await asyncio.sleep(0.05)

    dripping = asyncio.create_task(trickle())
    try:
        await _refused(reader, 408, "request_timeout")
    finally:
        writer.close()
        dripping.cancel()
        await asyncio.gather(dripping, return_exceptions=True)


#: This test's own head timeout: long enough that a test process starved for a second still sends
#: its first request in time. uvicorn's keep-alive timeout (5 s on a health listener) bounds the
#: wait before the second.
KEEP_ALIVE_HEAD_TIMEOUT = 2.0
KEEP_ALIVE_IDLE = 5.0


async def test_a_keep_alive_connections_next_request_has_the_same_deadline():
    timeout = KEEP_ALIVE_HEAD_TIMEOUT
    limits = ConnectionLimits(head_timeout_s=timeout, per_address=2, exempt=())
    listener = HealthListener({"/healthz": _ok}, host="127.0.0.1", port=0, limits=limits)
    await listener.start()
    try:
        opened = time.monotonic()  # before the server's timer starts
        reader, writer = await _open(("127.0.0.1", listener.port))
        writer.write(GET)
        first_sent = time.monotonic()
        assert first_sent - opened < timeout, "the first request was sent too late to test this"
        status, _, body = await _response(reader)
        assert status == 200, body
        answered = time.monotonic()
        # The connection's first deadline passes while it is idle (the server's timer started
        # before ``answered``): it was met, and is not held against the next request.
        await asyncio.sleep(timeout * 1.1)
        writer.write(GET)
        second_sent = time.monotonic()
        assert second_sent - answered < KEEP_ALIVE_IDLE, "idle past the keep-alive timeout: not this test"
        assert second_sent - opened > timeout
        assert (await _response(reader))[0] == 200
        writer.write(b"GET /healthz HTTP/1.1\r\nHost")  # the third never ends
        assert f"{timeout:g} s" in await _refused(reader, 408, "request_timeout")
        writer.close()
    finally:
        await listener.stop()


async def test_a_head_too_large_is_431_whether_it_ends_or_not(server: tuple[str, int]):
    reader, writer = await _open(server)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
    assert "65,536" in await _refused(reader, 431, "headers_too_large")
    writer.close()

    reader, writer = await _open(server)  # a header that never ends: cut before it is all read
    writer.write(b"GET /healthz HTTP/1.1\r\nX-Big: ")
    refused = asyncio.create_task(_refused(reader, 431, "headers_too_large"))
    sent = 0
    while not refused.done() and sent < 10_000_000:
        writer.write(b"a" * 16_384)
        sent += 16_384
        try:
            await writer.drain()
        except ConnectionError:
            break
        await asyncio.sleep(0.001)
    await refused
    assert sent < 1_000_000
    writer.close()


async def test_a_body_arriving_with_its_head_is_not_counted_as_head(server: tuple[str, int]):
    reader, writer = await _open(server)
    body = b"x" * 300_000
    writer.write(b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    status, _, answer = await _response(reader)
    assert status == 405, answer  # the listener's answer to a POST: the request reached it
    writer.write(GET)
    assert (await _response(reader))[0] == 200  # and the connection goes on
    writer.close()


async def test_one_address_holds_at_most_its_share_of_connections(
    server: tuple[str, int], limits: ConnectionLimits
):
    held = [await _open(server) for _ in range(2)]
    for reader, writer in held:
        writer.write(GET)
        assert (await _response(reader))[0] == 200
    reader, writer = await _open(server)
    assert "2 connections open" in await _refused(reader, 503, "too_many_connections")
    writer.close()
    held[0][1].close()  # one closed: room for one more
    await held[0][1].wait_closed()
    for _ in range(100):
        if sum(limits.held.values()) < 2:
            break
        await asyncio.sleep(0.02)
    reader, writer = await _open(server)
    writer.write(GET)
    assert (await _response(reader))[0] == 200
    writer.close()
    held[1][1].close()


async def test_loopback_is_not_counted_by_default():
    listener = HealthListener(
        {"/healthz": _ok}, host="127.0.0.1", port=0, limits=ConnectionLimits(per_address=2)
    )
    await listener.start()
    try:
        opened = [await _open(("127.0.0.1", listener.port)) for _ in range(5)]
        reader, writer = opened[-1]
        writer.write(GET)
        assert (await _response(reader))[0] == 200
        assert not listener.limits.held
        for _, w in opened:
            w.close()
    finally:
        await listener.stop()


async def test_bytes_that_are_not_http_get_the_error_shape(server: tuple[str, int]):
    reader, writer = await _open(server)
    writer.write(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 hello, TLS\r\n\r\n")
    await _refused(reader, 400, "bad_request")
    writer.close()


def test_what_connections_are_counted_under():
    assert counted_as("203.0.113.7") == "203.0.113.7"
    assert counted_as("::ffff:203.0.113.7") == "203.0.113.7"
    # One IPv6 host has a /64 of addresses to connect from: they are one.
    assert counted_as("2001:db8:1:2:aaaa::1") == counted_as("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert counted_as("2001:db8:1:3::1") != counted_as("2001:db8:1:2::1")
    assert (
        counted_as("127.0.0.1") is None
        and counted_as("::1") is None
        and counted_as("::ffff:127.0.0.1") is None
    )
    assert counted_as("127.0.0.1", exempt=()) == "127.0.0.1"
    assert counted_as("/run/api.sock") is None


def test_the_proxies_trusted_for_forwarded_headers_are_not_counted():
    behind = LOOPBACK + proxies("10.0.0.5, 172.18.0.0/16 ,proxy.internal,::ffff:x")
    assert counted_as("10.0.0.5", behind) is None and counted_as("172.18.3.4", behind) is None
    assert counted_as("10.0.0.6", behind) == "10.0.0.6"
    assert counted_as("203.0.113.7", proxies("*")) is None
    assert counted_as("2001:db8::1", proxies(["2001:db8::/32"])) is None


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """Everything the server still sent before it closed the connection, within ``seconds``. A
    close with the client's bytes still unread is a reset (the kernel's): closed all the same (a
    client that keeps sending meets one or the other, as its bytes and the close cross)."""
    out = b""
    async with asyncio.timeout(seconds):
        try:
            while chunk := await reader.read(65536):
                out += chunk
        except ConnectionResetError:
            pass
    return out


async def test_bytes_after_a_request_that_never_start_another_are_bounded_in_time(server: tuple[str, int]):
    # Bare CRLFs between requests (the parser skips them) kept the connection for ever, each
    # piece putting off uvicorn's keep-alive timeout.
    reader, writer = await _open(server)
    writer.write(GET)
    assert (await _response(reader))[0] == 200

    async def crlfs() -> None:
        while not writer.is_closing():
            writer.write(b"\r\n")
            await asyncio.sleep(0.1)

    dripping = asyncio.create_task(crlfs())
    try:
        assert await _closed_within(reader, 10) == b""  # closed, with nothing more to say
    finally:
        dripping.cancel()
        await asyncio.gather(dripping, return_exceptions=True)
        writer.close()


async def test_a_body_that_its_answer_did_not_wait_for_is_not_trickled_for_ever(server: tuple[str, int]):
    reader, writer = await _open(server)
    writer.write(b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n")
    assert (await _response(reader))[0] == 405  # answered at once, without reading the body

    async def trickle() -> None:
        while not writer.is_closing():
            writer.write(b"x" * 10)
            await asyncio.sleep(0.05)

    dripping = asyncio.create_task(trickle())
    try:
        assert await _closed_within(reader, 10) == b""
    finally:
        dripping.cancel()
        await asyncio.gather(dripping, return_exceptions=True)
        writer.close()


async def test_trailers_count_as_head_and_are_never_kept(server: tuple[str, int]):
    # Trailers after a chunked body reached on_header after the head was done: 200 MB of them
    # were appended to the request's headers, and one trailer that never ended grew in the parser.
    for trailer in (b"X-T: " + b"a" * 4000 + b"\r\n", b"a" * 16_384):
        _, writer = await _open(server)
        writer.write(b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n")
        sent = 0
        try:
            while sent < 5_000_000:
                writer.write(trailer * 4)
                sent += len(trailer) * 4
                await writer.drain()
                await asyncio.sleep(0.001)
        except ConnectionError:
            pass
        assert sent < 1_000_000, sent
        writer.close()


async def test_a_websocket_upgrade_is_answered_as_http_and_gives_its_connection_back(
    server: tuple[str, int], limits: ConnectionLimits
):
    # Handed to the WebSocket protocol, the connection's end was never seen here: two upgrade
    # requests took this address's two connections for good.
    upgrade = (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    for _ in range(4):
        reader, writer = await _open(server)
        writer.write(upgrade)
        assert (await _response(reader))[0] == 200
        assert await _closed_within(reader, 10) == b""  # and the connection ends with it
        writer.close()
        await writer.wait_closed()
    for _ in range(100):
        if not limits.held:
            break
        await asyncio.sleep(0.02)
    assert not limits.held
    reader, writer = await _open(server)
    writer.write(GET)
    assert (await _response(reader))[0] == 200
    writer.close()


async def test_a_body_and_the_start_of_the_next_request_in_one_piece_are_not_head(server: tuple[str, int]):
    reader, writer = await _open(server)
    body = b"x" * 100_000
    writer.write(
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
        + body
        + b"GET /healthz HTTP/1.1\r\nHo"
    )
    assert (await _response(reader))[0] == 405
    writer.write(b"st: x\r\n\r\n")
    assert (await _response(reader))[0] == 200
    writer.close()


async def test_a_client_still_sending_when_refused_reads_the_refusal(server: tuple[str, int]):
    # Closed at once with the client's bytes unread, the connection was reset, and the client
    # got ECONNRESET instead of the 431 (now the server reads and drops for a while, then closes).
    reader, writer = await _open(server)
    writer.write(
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n" + b"b" * 2_000_000
    )
    assert "65,536" in await _refused(reader, 431, "headers_too_large")
    writer.close()
