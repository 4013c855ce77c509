"""A run's SSE written straight from its shared feed (:mod:`.hub`).

With 1,000 clients on one run every event is 1,000 deliveries, so what a delivery costs the
gateway is what the last client waits. A client here is one coroutine that sends what it has
not seen yet (a catch-up, a resume) in writes of at most ``SLICE_BYTES``, each once the client
took the one before (a client that never reads holds 256 KB, not the run); once it has caught
up, the feed writes each new event to its connection itself, in the same pass as every other client's
(:meth:`.hub.Feed._push`): one ``transport.write`` per client and event, the HTTP chunk framed
once — no coroutine woken, no ASGI message, no middleware per delivery. That is done only while
the server's own bookkeeping says it is exactly what its ``send`` would do (uvicorn's httptools
protocol, a chunked body under way, the connection not paused for a slow reader, not closing);
otherwise the feed leaves the event to the client's coroutine, which sends it through the
server (waiting for a slow reader as any response does) and is pushed to again once caught up.
The server's ``send`` is known from the scope (:class:`KeepServerSend`, the outermost layer).

A feed keeps only a run's newest events (:class:`.hub.Memory`): a client that needs older
ones — it came late to a long run, resumed from early on, or read more slowly than the run wrote —
sends them from a consumer of its own (:meth:`.hub.Feed.history`), then goes on from the feed.

The guarantees are the same: ``id:`` = stream sequence and resume after ``Last-Event-ID``
(a client finds its place in the feed by sequence), a keep-alive comment when the feed was quiet
(the feed's own timer wakes every client; it never ends a stream), the end after the terminal
event, ``retry:`` when the gateway shuts down, and ``on_disconnect`` only when the client went
away (the ASGI ``http.disconnect`` message) before the run ended. The guard's check of the
request (:data:`.sse.STILL_ALLOWED`: its key not revoked or expired, its console session not
signed out) is asked again before a write, at most every ``CHECK_S``, also where the feed
writes itself: a stream ends within a second of its key's revocation, not with its run (up to
days later).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from typing import Any

from litestar import Request
from litestar.response import Stream
from litestar.types import HTTPResponseBodyEvent, Receive, Scope, Send

from crewyard import metrics
from crewyard.eventstore import StoreUnavailable

from .hub import Feed
from .sse import HEADERS, PING, RETRY_HINT, STILL_ALLOWED, Closing, in_background, next_write

_SENT = metrics.SSE_DELIVERIES.labels("sent")
#: Where :class:`KeepServerSend` keeps the server's own ``send`` in an HTTP request's scope.
SERVER_SEND = "crewyard.server_send"
#: How often a client's access is asked again while it is written to (each delivery would ask
#: it otherwise: a thousand clients, a thousand checks per event).
CHECK_S = 1.0


class KeepServerSend:
    """The outermost ASGI layer: keeps the server's ``send`` in the scope (see the module)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[SERVER_SEND] = send
        await self.app(scope, receive, send)


class _Connection:
    """A response's connection as uvicorn's httptools protocol keeps it (its request cycle)."""

    __slots__ = ("cycle", "flow", "transport")

    def __init__(self, cycle: Any) -> None:
        self.cycle, self.flow, self.transport = cycle, cycle.flow, cycle.transport

    def writable(self) -> bool:
        """Whether a chunk written now is what the server's ``send`` would write now."""
        cycle = self.cycle
        return not (
            cycle.disconnected
            or cycle.response_complete
            or self.flow.write_paused
            or self.transport.is_closing()
        )


def _connection(server_send: Any) -> _Connection | None:
    """The connection behind the server's ``send`` once a chunked response has started; None
    for any other server, protocol or response (those clients are written through ``send``)."""
    cycle: Any = getattr(server_send, "__self__", None)
    if cycle is None or type(cycle).__module__ != "uvicorn.protocols.http.httptools_impl":
        return None
    if getattr(cycle, "chunked_encoding", None) is not True or not getattr(cycle, "response_started", False):
        return None
    if not all(hasattr(cycle, name) for name in ("flow", "transport", "disconnected", "response_complete")):
        return None
    if not hasattr(cycle.flow, "write_paused") or not isinstance(cycle.transport, asyncio.Transport):
        return None
    return _Connection(cycle)


class FeedStream(Stream):
    """The ``text/event-stream`` response of one client of a feed (see the module)."""

    def __init__(
        self,
        feed: Feed,
        start_seq: int,
        *,
        is_last: Callable[[str], bool],
        release: Callable[[], None],
        closing: Closing,
        on_disconnect: Callable[[], Coroutine[Any, Any, None]] | None = None,
        stream: str = "run",
    ) -> None:
        super().__init__((), media_type="text/event-stream", headers=HEADERS)
        self.follow = _Follow(feed, start_seq, is_last, release, closing, on_disconnect, stream)

    def to_asgi_response(self, app: Any, request: Request[Any, Any, Any], **kwargs: Any) -> Any:
        # The route's media type would win over the response's (see sse.EventStream).
        kwargs["media_type"] = "text/event-stream"
        self.follow.start_response = super().to_asgi_response(app, request, **kwargs).start_response
        allowed = request.scope.get(STILL_ALLOWED)
        self.follow.allowed = allowed if callable(allowed) else None
        return self.follow


def _body(chunk: bytes, more: bool = True) -> HTTPResponseBodyEvent:
    return {"type": "http.response.body", "body": chunk, "more_body": more}


class _Follow:
    def __init__(
        self,
        feed: Feed,
        start_seq: int,
        is_last: Callable[[str], bool],
        release: Callable[[], None],
        closing: Closing,
        on_disconnect: Callable[[], Coroutine[Any, Any, None]] | None,
        stream: str,
    ) -> None:
        self.feed, self.start_seq, self.is_last = feed, start_seq, is_last
        self.release, self.closing, self.on_disconnect, self.stream = release, closing, on_disconnect, stream
        self.start_response: Callable[[Send], Coroutine[Any, Any, None]] | None = None
        self.gone = False  # set only by the client's http.disconnect
        self.waiter: asyncio.Future[None] | None = None
        #: Where the client is in the feed: the position of the next item it gets (below the
        #: feed's ``base`` once the feed dropped it), and the sequence it needs events from.
        self.index = 0
        self.next_seq = start_seq
        #: The connection the feed may write to (None: only through ``send``).
        self.connection: _Connection | None = None
        self.finished = False  # the feed wrote the terminal event
        #: The guard's check of the request (see the module), and when to ask it next.
        self.allowed: Callable[[], bool] | None = None
        self.check_at = 0.0
        self.refused = False

    def still_allowed(self) -> bool:
        if self.refused:
            return False
        if self.allowed is None:
            return True
        now = time.monotonic()
        if now < self.check_at:
            return True
        self.check_at = now + CHECK_S
        self.refused = not self.allowed()
        return not self.refused

    def push(self, seq: int, event_type: str, frame: bytes) -> bool:
        """The feed's newest event, at ``self.index`` (see :meth:`.hub.Feed._push`)."""
        if seq < self.start_seq:  # resumed past what the feed has: not this client's
            self.index += 1
            return False
        connection = self.connection
        if connection is None or not connection.writable() or not self.still_allowed():
            self.feed.pushed.pop(self, None)
            self.wake()  # the coroutine sends it, through the server
            return False
        connection.transport.write(frame)
        self.index += 1
        self.next_seq = seq + 1
        if self.is_last(event_type):
            self.finished = True
            self.feed.pushed.pop(self, None)
            self.wake()
        return True

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def _listen(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.gone = True
        self.wake()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.start_response is not None
        await self.start_response(send)
        self.connection = _connection(scope.get(SERVER_SEND))
        listener = asyncio.create_task(self._listen(receive))
        metrics.SSE_CLIENTS.labels(self.stream).inc()
        self.closing.watch(self.wake)
        ended = False
        try:
            ended = await self._write(send)
        finally:
            self.feed.pushed.pop(self, None)
            listener.cancel()
            self.closing.unwatch(self.wake)
            metrics.SSE_CLIENTS.labels(self.stream).dec()
            self.release()
            if self.on_disconnect is not None and self.gone and not ended:
                in_background(self.on_disconnect())
        if not self.gone:
            await send(_body(b"", more=False))

    async def _write(self, send: Send) -> bool:
        """Send until the terminal event (True), the client leaving or the gateway closing."""
        feed, items, is_last = self.feed, self.feed.items, self.is_last
        loop = asyncio.get_running_loop()
        self.index = feed.position(self.start_seq)
        while True:
            if self.closing.is_set():
                await send(_body(RETRY_HINT))
                return True  # the gateway is going away, not the client: never cancels its run
            if self.gone:
                return False
            if self.finished:
                return True
            if not self.still_allowed():
                return True  # the server's decision, not the client leaving: cancels nothing
            base = feed.base
            index, end = self.index - base, len(items)
            if index < 0:  # what comes next is no longer in the feed: from the stream
                ended = await self._history(send)
                if ended is not None:
                    return ended
                self.index = feed.position(self.next_seq)
            elif index < end:
                if feed.seqs[index] < self.start_seq:  # the feed was filling up as the client came
                    self.index = feed.position(self.start_seq)
                    continue
                last = False
                if end - index == 1:  # the usual case while a run is live: one new event
                    seq, event_type, chunk = items[index]
                    last, count = is_last(event_type), 1
                else:  # a catch-up: at most SLICE_BYTES a write, each after the client took the last
                    chunk, count, last = next_write(items, index, end, is_last)
                    seq = items[index + count - 1][0]
                _SENT.inc(count)
                self.index, self.next_seq = base + index + count, seq + 1
                await send(_body(chunk))
                if last:
                    return True
            else:
                if self.connection is not None and self.connection.writable():
                    # Caught up: the feed writes what comes next; woken only by a keep-alive,
                    # the terminal event, a connection that is not writable, leaving or closing.
                    self.waiter = loop.create_future()
                    feed.pushed[self] = None
                else:
                    self.waiter = feed.waiter()  # woken by the next event
                try:
                    await self.waiter
                finally:
                    feed.pushed.pop(self, None)
                quiet = self.index >= feed.base + len(items) and not self.finished
                if quiet and not self.gone and not self.closing.is_set():
                    await send(_body(PING))  # woken by the feed's keep-alive: nothing new

    async def _history(self, send: Send) -> bool | None:
        """Send what the feed no longer holds, from the stream (:meth:`.hub.Feed.history`): None
        once the feed holds what comes next, else how :meth:`_write` ends — at the terminal
        event, the client leaving, or a store that cannot be read (a retry hint: the client
        resumes where it is, from this gateway or another)."""
        try:
            async with contextlib.aclosing(self.feed.history(self.next_seq)) as older:
                async for next_seq, batch in older:
                    if self.gone or self.closing.is_set() or not self.still_allowed():
                        return None  # :meth:`_write` ends the stream as each of them wants
                    done = 0
                    while done < len(batch):  # a batch may be a slice and one more event
                        chunk, count, last = next_write(batch, done, len(batch), self.is_last)
                        done += count
                        await send(_body(chunk))
                        if last:
                            return True
                    self.next_seq = next_seq
        except (TimeoutError, StoreUnavailable):
            if self.gone:
                return False  # the client went away meanwhile: as :meth:`_write` says it
            await send(_body(RETRY_HINT))
            return True
        return None
