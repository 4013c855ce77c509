"""``crewyard.httplimits`` once a request's head is in: the pace of its body, requests sent ahead
of their answers, and clients that take no answer — on a real uvicorn server with a small app."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import uvicorn

from crewyard.httplimits import MAX_PIPELINED, ConnectionLimits, limited_protocol

WINDOW = 0.5  # the head timeout, and the window a body's pace is judged over


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/early":  # answers before reading the body, as a refused upload is
        body, status = b"refused", 401
    elif path == "/big":
        body, status = b"x" * 5_000_000, 200
    else:  # /read: reads the whole body, slowly, then says how much it got
        got = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            got += len(message.get("body", b""))
            if path == "/slow-reader":
                await asyncio.sleep(0.05)
            if not message.get("more_body"):
                break
        body, status = str(got).encode(), 200
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-length", b"%d" % len(body))]}
    )
    await send({"type": "http.response.body", "body": body})


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@pytest.fixture
async def limits() -> ConnectionLimits:
    return ConnectionLimits(head_timeout_s=WINDOW, per_address=4, exempt=(), write_stall_s=WINDOW)


@pytest.fixture
async def port(limits: ConnectionLimits) -> AsyncIterator[int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    config = uvicorn.Config(
        _app, lifespan="off", log_level="warning", http=limited_protocol(limits), timeout_keep_alive=1
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield int(sock.getsockname()[1])
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


async def _responses(reader: asyncio.StreamReader, within: float = 10) -> list[tuple[int, bytes]]:
    """Every response until the server closes the connection (a reset counts as the close)."""
    out = []
    with contextlib.suppress(ConnectionError):
        async with asyncio.timeout(within):
            while line := await reader.readline():
                headers = {}
                while (h := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = h.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                out.append((int(line.split()[1]), await reader.readexactly(int(headers["content-length"]))))
    return out


async def _send_paced(writer: asyncio.StreamWriter, total: int, piece: int, every: float) -> bool:
    """Send ``total`` bytes in ``piece``s every ``every`` s; False if the server cut it off
    (within 10 s: a server that never does fails the test)."""
    sent = 0
    deadline = asyncio.get_running_loop().time() + 10
    try:
        while sent < total:
            assert asyncio.get_running_loop().time() < deadline, f"still sending after 10 s ({sent:,} bytes)"
            writer.write(b"x" * min(piece, total - sent))
            await writer.drain()
            sent += piece
            await asyncio.sleep(every)
    except ConnectionError:
        return False
    return True


def _post(path: str, length: int) -> bytes:
    return b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (path.encode(), length)


async def test_a_body_trickled_to_an_app_that_reads_it_is_cut_off(port: int):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_post("/read", 1_000_000))
    finished = await _send_paced(writer, 1_000_000, 10, 0.05)  # 200 bytes a second
    assert not finished
    assert await _responses(reader) == []  # the app never answered: nothing was written for it
    writer.close()


@pytest.mark.parametrize(
    ("path", "answer"),
    [
        ("/read", (200, b"400000")),  # read whole however long it takes, at a fair pace
        # The answer came first, and the client sends its whole body before it reads (as
        # http.client does): cut off after the head timeout, it got a reset, not the answer.
        ("/early", (401, b"refused")),
    ],
)
async def test_a_body_at_a_fair_pace_may_take_many_windows(port: int, path: str, answer: tuple[int, bytes]):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_post(path, 400_000))
    assert await _send_paced(writer, 400_000, 20_000, 0.1)  # 2 s: four windows
    assert await _responses(reader) == [answer]
    writer.close()


async def test_an_app_that_reads_slowly_is_not_taken_for_a_slow_client(port: int):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_post("/slow-reader", 3_000_000) + b"x" * 3_000_000)
    assert await _responses(reader, within=60) == [(200, b"3000000")]
    writer.close()


async def test_requests_sent_ahead_of_their_answers_are_bounded(port: int):
    # Thousands of requests in one write, their answers never read: each waited in memory.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n" + b"GET /read HTTP/1.1\r\nHost: x\r\n\r\n" * 5_000)
    await asyncio.sleep(1)
    answered = await _responses(reader)
    assert len(answered) <= MAX_PIPELINED + 1
    writer.close()


async def test_a_client_that_takes_no_answer_is_let_go(port: int, limits: ConnectionLimits):
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.transport.pause_reading()  # reads nothing of 5 MB: the server's send stops
    writer.write(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    for _ in range(200):  # aborted after write_stall_s: its place is free again
        if not limits.held:
            break
        await asyncio.sleep(0.05)
    assert not limits.held
    writer.close()


async def test_a_bad_chunk_after_the_answer_gets_no_second_answer(port: int):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /early HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    await asyncio.sleep(0.2)
    writer.write(b"zz\r\n")
    assert await _responses(reader) == [(401, b"refused")]
    writer.close()
