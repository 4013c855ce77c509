"""Server-sent events straight from the stream.

Each SSE message's ``id`` is the event's stream sequence, so ``Last-Event-ID`` (or ``?after=``)
resumes exactly after the last event a client saw: no gap, no duplicate. ``event`` is the event
type and ``data`` the event's JSON envelope (``{"type", "data", …}``), upcast to today's version.

Messages are rendered to SSE text once and written in batches: whatever has arrived since the
client's last write goes out in one chunk, so a burst of events costs one socket write.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable, Coroutine, Sequence
from typing import Any

from litestar import Request
from litestar.openapi import ResponseSpec
from litestar.response import Stream
from litestar.response.base import ASGIResponse

from crewyard import metrics
from crewyard.contract.events import MEDIA_TYPE, StreamEvent
from crewyard.core.events import InvalidEvent, encode, is_current
from crewyard.eventstore import EventStore, RawEvent, StoreUnavailable, set_aside

from .errors import bad_request

PING = b": ping\n\n"
#: Sent when the gateway shuts down: the client waits this long and reconnects with
#: Last-Event-ID (through a load balancer, to another gateway) — nothing lost, nothing repeated.
RETRY_HINT = b"retry: 1000\n\n"
HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no", "Connection": "keep-alive"}
#: The most one write of a stream sends: a catch-up (a resume, a late client) goes out in pieces
#: of this size, each after the client took the one before. Written whole, a run's 27 MB sat in
#: the server's buffer for every client that did not read it (100 of them: 2.6 GB).
SLICE_BYTES = 256 * 1024


def next_write(
    frames: Sequence[tuple[int, str, bytes]], start: int, stop: int, is_last: Callable[[str], bool]
) -> tuple[bytes, int, bool]:
    """The next write of a stream from ``frames[start:stop]`` (sequence, event type, frame): at
    most :data:`SLICE_BYTES` (or one frame, if larger), ending at a terminal event. Returns the
    bytes, how many frames they are, and whether a terminal event ended them."""
    parts: list[bytes] = []
    size = 0
    for i in range(start, stop):
        _seq, event_type, frame = frames[i]
        if parts and size + len(frame) > SLICE_BYTES:
            break
        parts.append(frame)
        size += len(frame)
        if is_last(event_type):
            return b"".join(parts), len(parts), True
    return b"".join(parts), len(parts), False


#: The route options of an event stream: the read role, and one of its key's stream places
#: (``CREWYARD_STREAMS_PER_KEY``) while it is open.
STREAM = {"role": "read", "stream": True}
_closing: set[asyncio.Task[Any]] = set()
#: How the SSE routes are documented: ``text/event-stream`` whose messages' ``data`` is a
#: :class:`StreamEvent` (``id`` = stream sequence, ``event`` = its type).
SSE = {
    200: ResponseSpec(
        StreamEvent,
        media_type=MEDIA_TYPE,
        description="Server-sent events: `id` is the stream sequence (send it back as Last-Event-ID"
        " to resume), `event` the type, `data` the event as JSON (this schema); `: ping` keeps it open",
    )
}


def in_background(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` to its end in a task of its own (kept referenced until then): what a stream
    does after its client went away, while its own task is being ended."""
    task = asyncio.create_task(coro)
    _closing.add(task)
    task.add_done_callback(_closing.discard)


MAX_SEQ = 2**63


def resume_after(request: Request[Any, Any, Any]) -> int | None:
    raw = request.headers.get("last-event-id") or request.query_params.get("after")
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise bad_request("Last-Event-ID / after must be a stream sequence number") from None
    if not 0 <= value < MAX_SEQ:  # a stream's sequences are 64-bit; past them NATS refuses the read
        raise bad_request(f"Last-Event-ID / after must be a stream sequence number (0 to {MAX_SEQ - 1})")
    return value


async def resume_from(
    store: EventStore, filt: str, after: int | None, *, ended: bool, confirm: bool = False
) -> int | None:
    """The first sequence a stream of the events ``filt`` matches sends to a client that saw
    those up to ``after`` (None or 0: none yet); None when nothing is left to send, because the
    stream has ``ended`` and the client saw its last event. An id past the last event (no client
    saw one there) resumes from that event, so what ends the stream still ends it for this
    client. ``confirm``: ask the store even for a client that saw nothing, so that a stream that
    has ended answers only if the store does now (a 503 otherwise), though a feed already open
    may be what sends it."""
    if not after and not confirm:
        return 1
    last = await store.last_seq_of(filt)
    if not after:
        return 1
    if last is None:
        return after + 1
    if ended and after >= last:
        return None
    return min(after, last) + 1


def render(raw: RawEvent, prefix: str) -> tuple[str, bytes] | None:
    """One SSE message and its event type: ``id`` = stream sequence, ``event`` = type, ``data`` =
    the envelope. None for stored bytes that are not a valid event: they are set aside, never
    sent (a client's decoder must not meet what ours refuses)."""
    try:
        event = raw.decode(prefix).event
    except InvalidEvent as exc:
        set_aside("sse", raw.seq, raw.subject, exc)
        return None
    data = raw.data if is_current(raw.data) else encode(event)
    return event.type, b"id: %d\nevent: %s\ndata: %s\n\n" % (raw.seq, event.type.encode(), data)


#: A source of rendered batches: lists of (seq, type, sse bytes). An empty list means "nothing new
#: for a keep-alive interval": the source itself times its waits, so a keep-alive never interrupts
#: it (cancelling a generator mid-wait ends it for good).
Batches = AsyncGenerator[list[tuple[int, str, bytes]], None]


#: Where the access guard leaves, in a stream's ASGI scope, its check of whether the request would
#: still be let in (its key usable, its console session not signed out): asked before each write.
STILL_ALLOWED = "crewyard.still_allowed"


class _Watch:
    """Whether the client went away: set only when the server hears ``http.disconnect``; and
    the guard's :data:`STILL_ALLOWED` check of the request, if it left one."""

    gone = False
    allowed: Callable[[], bool] | None = None


class EventStream(Stream):
    """A ``text/event-stream`` response that tells a real client disconnect apart from the
    server's own close (end of stream, a failed source, shutdown): only the ASGI
    ``http.disconnect`` message sets ``watch.gone``."""

    def __init__(self, body: AsyncGenerator[bytes, None], watch: _Watch) -> None:
        super().__init__(body, media_type="text/event-stream", headers=HEADERS)
        self.watch = watch

    def to_asgi_response(self, app: Any, request: Request[Any, Any, Any], **kwargs: Any) -> ASGIResponse:
        # Litestar lets the route's media type (JSON for handlers annotated ``Any``) win over
        # the response's own: an EventSource refuses a stream that is not text/event-stream.
        kwargs["media_type"] = "text/event-stream"
        allowed = request.scope.get(STILL_ALLOWED)
        self.watch.allowed = allowed if callable(allowed) else None
        inner = super().to_asgi_response(app, request, **kwargs)
        return _Watched(inner, self.watch)


class _Watched(ASGIResponse):
    """Passes everything to the streaming response, noting a client disconnect on the way."""

    def __init__(self, inner: ASGIResponse, watch: _Watch) -> None:
        self.inner, self.watch = inner, watch

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def watched() -> Any:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.watch.gone = True  # before the stream is cancelled: its cleanup reads this
            return message

        await self.inner(scope, watched, send)


class Closing:
    """The gateway shutting down, as its SSE streams see it: ``set`` once, and every live stream
    is woken at once to end with a retry hint. (A stream waits for its next batch inside a
    timeout with no deadline, which ``set`` brings forward to now: nothing per batch but that
    context, where racing the wait against an event would cost a task per batch and client.)"""

    def __init__(self) -> None:
        self._set = False
        self._wakers: set[Callable[[], None]] = set()

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        for wake in list(self._wakers):
            wake()

    def watch(self, wake: Callable[[], None]) -> None:
        self._wakers.add(wake)

    def unwatch(self, wake: Callable[[], None]) -> None:
        self._wakers.discard(wake)


def sse_response(
    batches: Batches,
    *,
    is_last: Callable[[str], bool] = lambda _t: False,
    on_disconnect: Callable[[], Coroutine[Any, Any, None]] | None = None,
    release: Callable[[], None] | None = None,
    stream: str = "events",
    closing: Closing | None = None,
) -> EventStream:
    """Write ``batches`` as SSE until the last event (``is_last``); a keep-alive comment for every
    empty batch. ``on_disconnect`` runs only if the client went away before the last event. When
    ``closing`` is set (the gateway shuts down) the stream ends with a retry hint. Before each
    write the guard's check (:data:`STILL_ALLOWED`) is asked again: a stream outlives no
    revocation, expiry or sign-out by more than one keep-alive interval (the client that
    reconnects is refused as any request would be)."""
    watch = _Watch()

    async def body() -> AsyncGenerator[bytes, None]:
        ended = False
        waiting: list[asyncio.Timeout] = []  # the wait for the next batch, while there is one

        def wake() -> None:
            for timeout in waiting:
                timeout.reschedule(asyncio.get_running_loop().time())

        metrics.SSE_CLIENTS.labels(stream).inc()
        if closing is not None:
            closing.watch(wake)
        try:
            while True:
                if closing is not None and closing.is_set():
                    ended = True  # the gateway is going away, not the client: never cancels its run
                    yield RETRY_HINT
                    return
                try:
                    if closing is None:
                        batch = await anext(batches)
                    else:
                        async with asyncio.timeout(None) as timeout:
                            waiting.append(timeout)
                            batch = await anext(batches)
                except TimeoutError:
                    if closing is not None and closing.is_set():
                        continue  # woken by closing (the source ends here anyway)
                    ended = True  # the source could not read the store: the client resumes
                    yield RETRY_HINT
                    return
                except StoreUnavailable:
                    ended = True
                    yield RETRY_HINT
                    return
                except StopAsyncIteration:
                    return
                finally:
                    waiting.clear()
                if watch.allowed is not None and not watch.allowed():
                    ended = True  # the server's decision, not the client leaving: cancels nothing
                    return
                if not batch:
                    yield PING
                    continue
                done = 0
                while done < len(batch):
                    piece, count, ended = next_write(batch, done, len(batch), is_last)
                    yield piece
                    if ended:
                        return
                    done += count
        finally:
            if closing is not None:
                closing.unwatch(wake)
            metrics.SSE_CLIENTS.labels(stream).dec()
            if release is not None:
                release()
            if on_disconnect is not None and watch.gone and not ended:
                # The generator is being cancelled (client gone): finish in a task of its own.
                in_background(on_disconnect())
            with contextlib.suppress(Exception):
                await batches.aclose()

    return EventStream(body(), watch)


async def followed(
    store: EventStore,
    filter_subject: str,
    start_seq: int,
    ping_s: float,
    keep: Callable[[RawEvent], bool] | None = None,
) -> Batches:
    """Batches from a consumer of this client's own (project streams, build logs, threads), of
    the events ``keep`` keeps. The first batch is empty and comes once the consumer exists (see
    :func:`stream_events`)."""
    last = start_seq - 1
    loop = asyncio.get_running_loop()
    async with store.follow(filter_subject, start_seq=start_seq) as queue:
        yield []
        said = loop.time()  # when the client last had a batch (empty ones are keep-alives)
        while True:
            try:
                async with asyncio.timeout(max(0.0, said + ping_s - loop.time())):
                    batch = [await queue.get()]
            except TimeoutError:
                said = loop.time()
                yield []  # quiet (or only events ``keep`` drops): time for a keep-alive
                continue
            while not queue.empty():
                batch.append(queue.get_nowait())
            out = []
            for raw in batch:
                if raw.seq <= last:
                    continue  # a consumer recreated after a broker restart may repeat one
                last = raw.seq
                if keep is not None and not keep(raw):
                    continue
                rendered = render(raw, store.prefix)
                if rendered is not None:
                    out.append((raw.seq, *rendered))
            if out:
                said = loop.time()
                yield out


async def stream_events(
    store: EventStore,
    filter_subject: str,
    start_seq: int,
    *,
    ping_s: float,
    is_last: Callable[[str], bool] = lambda _t: False,
    stream: str = "events",
    closing: Closing | None = None,
    keep: Callable[[RawEvent], bool] | None = None,
) -> EventStream:
    """SSE from a consumer of the client's own. The consumer is made before answering, so a
    stream that cannot be read is a 503 (``StoreUnavailable``), not a 200 that never says a thing."""
    batches = followed(store, filter_subject, start_seq, ping_s, keep)
    await anext(batches)
    return sse_response(batches, is_last=is_last, stream=stream, closing=closing)


def closed_stream(last: bytes = b"") -> EventStream:
    """A stream that ends at once, after ``last`` (if any)."""

    async def nothing() -> AsyncGenerator[bytes, None]:
        if last:
            yield last

    return EventStream(nothing(), _Watch())
