"""What an event stream follower does when a connection fails, sync and async alike: a server
that is not there, or answers an error before the stream ever opened, fails at once; once the
stream was open, drops and 502/503/504 are retried up to ``max_retries`` times in a row; a
server that keeps closing without anything new is given up with a message that says so."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import pytest

from crewyard.client import AsyncEventStream, EventStream, NotFound, TransportError, Unavailable
from crewyard.client._errors import ClientError
from crewyard.client._sse import SseLines, SseParser
from crewyard.client._transport import AsyncTransport, Transport
from crewyard.testing.fakeapi import FakeApi, Reply, Sse

PATH = "/v1/runs/run_test/events"
RETRIES = 2
BUSY = Reply(503, {"error": {"code": "unavailable", "message": "the store is busy"}})
EVENTS = [(1, "run.started", {}), (2, "log", {"message": "a"})]

#: Follows the stream at a URL, appending each event's type to the list, until it raises.
Follow = Callable[[str, list[str]], Awaitable[None]]


async def _sync(url: str, seen: list[str]) -> None:
    transport = Transport(url)
    try:
        for msg in EventStream(transport, PATH, max_retries=RETRIES, backoff_s=0.01):
            seen.append(msg.decode().type)
    finally:
        transport.close()


async def _async(url: str, seen: list[str]) -> None:
    transport = AsyncTransport(url)
    try:
        async for msg in AsyncEventStream(transport, PATH, max_retries=RETRIES, backoff_s=0.01):
            seen.append(msg.decode().type)
    finally:
        await transport.close()


both = pytest.mark.parametrize("follow", [_sync, _async], ids=["sync", "async"])


@both
async def test_a_server_that_is_not_there_fails_at_once(follow: Follow, dead_url: str) -> None:
    with pytest.raises(TransportError, match=re.escape(dead_url)):
        await follow(dead_url, [])


@both
async def test_an_error_before_the_stream_opened_is_not_retried(follow: Follow, api: FakeApi) -> None:
    api.route("GET", PATH, [BUSY, Sse(EVENTS)])
    with pytest.raises(Unavailable, match="the store is busy"):
        await follow(api.url, [])
    assert len(api.calls("GET", PATH)) == 1


@both
async def test_once_open_unavailable_answers_are_retried_then_given_up(follow: Follow, api: FakeApi) -> None:
    # The stream opens and ends cleanly after an event; the reconnects meet 503s.
    api.route("GET", PATH, [Sse(EVENTS[:1]), BUSY])
    seen: list[str] = []
    with pytest.raises(Unavailable, match="the store is busy"):
        await follow(api.url, seen)
    assert seen == ["run.started"]
    calls = api.calls("GET", PATH)
    assert len(calls) == 1 + RETRIES + 1  # the stream, then the budget and the one over it
    assert {c.headers.get("last-event-id") for c in calls[1:]} == {"1"}


@both
async def test_a_drop_is_resumed_and_the_stream_goes_on(follow: Follow, api: FakeApi) -> None:
    # Dropped mid-event on the first connection, then 503 once, then the rest: each seen once.
    api.route("GET", PATH, [Sse(EVENTS, drop_after=1), BUSY, Sse(EVENTS), Sse([])])
    seen: list[str] = []
    with pytest.raises(ClientError, match="keeps closing without new events"):
        await follow(api.url, seen)
    assert seen == ["run.started", "log"]
    calls = api.calls("GET", PATH)
    assert [c.headers.get("last-event-id") for c in calls] == [None, "1", "1"] + ["2"] * (RETRIES + 1)


@both
async def test_a_stream_that_keeps_closing_empty_is_given_up(follow: Follow, api: FakeApi) -> None:
    api.route("GET", PATH, [Sse(EVENTS), Sse([])])
    seen: list[str] = []
    with pytest.raises(ClientError, match="keeps closing without new events"):
        await follow(api.url, seen)
    assert seen == ["run.started", "log"]
    # One connection with the events, then empty ones: the budget and the one over it.
    assert len(api.calls("GET", PATH)) == 1 + RETRIES + 1


@both
async def test_not_found_is_raised_as_it_is(follow: Follow, api: FakeApi) -> None:
    api.route("GET", PATH, Reply(404, {"error": {"code": "not_found", "message": "run run_test not found"}}))
    with pytest.raises(NotFound, match="run run_test not found"):
        await follow(api.url, [])
    assert len(api.calls("GET", PATH)) == 1


@both
async def test_line_breaks_other_than_cr_and_lf_are_part_of_an_event(follow: Follow, api: FakeApi) -> None:
    # A crew's log line or artifact name may hold U+2028, U+2029 or U+0085: JSON needs no escape
    # for them, and SSE ends lines only at CR and LF (str.splitlines, httpx's iter_lines, not so).
    api.route("GET", PATH, [Sse([(1, "log", {"message": "a\u2028b\u2029c\x85d"})]), Sse([])])
    seen: list[str] = []
    with pytest.raises(ClientError, match="keeps closing without new events"):
        await follow(api.url, seen)
    assert seen == ["log"]


def test_sse_lines_end_at_cr_lf_and_crlf_only_wherever_the_pieces_are_cut() -> None:
    stream = 'id: 1\r\ndata: {"m": "a\u2028b\x85c"}\r\n\r\nid: 2\rdata: x\n\n'
    want = ["id: 1", 'data: {"m": "a\u2028b\x85c"}', "", "id: 2", "data: x", ""]
    for cut in range(len(stream) + 1):  # a CRLF split between two pieces is still one break
        lines = SseLines()
        assert lines.feed(stream[:cut]) + lines.feed(stream[cut:]) == want, cut
    pieces = SseLines()  # a CRLF cut after its CR, then an empty line in a piece of its own
    assert [pieces.feed(p) for p in ("data: a\r", "\n", "\n", "\r\n")] == [["data: a"], [], [""], [""]]
    parser = SseParser()
    messages = [m for line in SseLines().feed(stream) if (m := parser.feed(line)) is not None]
    assert [m.data for m in messages] == ['{"m": "a\u2028b\x85c"}', "x"]
