"""Server-sent events straight from the stream.

Each SSE message's ``id`` is the event's stream sequence, so ``Last-Event-ID`` (or ``?after=``)
resumes exactly after the last event a client saw: no gap, no duplicate. ``event`` is the event
type and ``data`` the event's JSON envelope (``{"type", "data", …}``), upcast to today's version.

Messages are rendered to SSE text once and written in batches: whatever has arrived since the
client's last write goes out in one chunk, so a burst of events costs one socket write.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from typing import Any

from litestar import Request
from litestar.response import Stream

from crewyard.core.events import InvalidEvent, encode, is_current
from crewyard.eventstore import EventStore, RawEvent, set_aside

from .errors import bad_request

PING_EVERY = 15.0
PING = b": ping\n\n"
HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no", "Connection": "keep-alive"}
_closing: set[asyncio.Task[Any]] = set()


def resume_after(request: Request[Any, Any, Any]) -> int | None:
    raw = request.headers.get("last-event-id") or request.query_params.get("after")
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise bad_request("Last-Event-ID / after must be a stream sequence number") from None
    if value < 0:
        raise bad_request("Last-Event-ID / after must not be negative")
    return value


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


#: A source of rendered batches: lists of (seq, type, sse bytes), ending when the caller stops.
Batches = AsyncIterator[list[tuple[int, str, bytes]]]


def sse_response(
    batches: Batches,
    *,
    is_last: Callable[[str], bool] = lambda _t: False,
    on_close: Callable[[], Coroutine[Any, Any, None]] | None = None,
    release: Callable[[], None] | None = None,
) -> Stream:
    async def body() -> AsyncGenerator[bytes, None]:
        ended = False
        try:
            while True:
                try:
                    batch = await asyncio.wait_for(anext(batches), PING_EVERY)
                except TimeoutError:
                    yield PING
                    continue
                except StopAsyncIteration:
                    return
                chunk = []
                for _seq, event_type, text in batch:
                    chunk.append(text)
                    if is_last(event_type):
                        ended = True
                        break
                if chunk:
                    yield b"".join(chunk)
                if ended:
                    return
        finally:
            if release is not None:
                release()
            if on_close is not None and not ended:
                # The generator is usually being cancelled (client gone): finish in a task of its own.
                task = asyncio.create_task(on_close())
                _closing.add(task)
                task.add_done_callback(_closing.discard)

    return Stream(body(), media_type="text/event-stream", headers=HEADERS)


async def followed(store: EventStore, filter_subject: str, start_seq: int) -> Batches:
    """Batches from a consumer of this client's own (project streams, build logs)."""
    last = start_seq - 1
    async with store.follow(filter_subject, start_seq=start_seq) as queue:
        while True:
            batch = [await queue.get()]
            while not queue.empty():
                batch.append(queue.get_nowait())
            out = []
            for raw in batch:
                if raw.seq <= last:
                    continue  # a consumer recreated after a broker restart may repeat one
                last = raw.seq
                rendered = render(raw, store.prefix)
                if rendered is not None:
                    out.append((raw.seq, *rendered))
            if out:
                yield out


def stream_events(
    store: EventStore,
    filter_subject: str,
    start_seq: int,
    *,
    is_last: Callable[[str], bool] = lambda _t: False,
    on_close: Callable[[], Coroutine[Any, Any, None]] | None = None,
) -> Stream:
    return sse_response(followed(store, filter_subject, start_seq), is_last=is_last, on_close=on_close)


def closed_stream() -> Stream:
    async def nothing() -> AsyncGenerator[bytes, None]:
        return
        yield b""  # pragma: no cover - makes this an (empty) async generator

    return Stream(nothing(), media_type="text/event-stream", headers=HEADERS)
