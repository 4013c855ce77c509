"""Server-sent events straight from the stream.

Each SSE message's ``id`` is the event's stream sequence, so ``Last-Event-ID`` (or ``?after=``)
resumes exactly after the last event a client saw: no gap, no duplicate. ``event`` is the event
type and ``data`` the event's JSON envelope (``{"type", "data", …}``), upcast to today's version.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from typing import Any

from litestar import Request
from litestar.response import ServerSentEvent
from litestar.response.sse import ServerSentEventMessage

from crewyard.core import subjects
from crewyard.core.events import decode, encode, is_current
from crewyard.eventstore import EventStore, RawEvent

from .errors import bad_request

PING_EVERY = 15.0
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


def wire(raw: RawEvent) -> str:
    data = raw.data if is_current(raw.data) else encode(decode(raw.data))
    return data.decode()


def stream_events(
    store: EventStore,
    filter_subject: str,
    start_seq: int,
    *,
    is_last: Callable[[str], bool] = lambda _t: False,
    on_close: Callable[[], Any] | None = None,
) -> ServerSentEvent:
    async def gen() -> AsyncGenerator[ServerSentEventMessage, None]:
        ended = False
        last = start_seq - 1
        try:
            async with store.follow(filter_subject, start_seq=start_seq) as queue:
                while True:
                    try:
                        raw = await asyncio.wait_for(queue.get(), PING_EVERY)
                    except TimeoutError:
                        yield ServerSentEventMessage(comment="ping")
                        continue
                    if raw.seq <= last:
                        continue  # a consumer recreated after a broker restart may repeat one
                    last = raw.seq
                    event_type = subjects.parse_subject(raw.subject, store.prefix)[3]
                    yield ServerSentEventMessage(data=wire(raw), event=event_type, id=raw.seq)
                    if is_last(event_type):
                        ended = True
                        return
        finally:
            if on_close is not None and not ended:
                # The generator is usually being cancelled (client gone): finish in a task of its own.
                task = asyncio.create_task(on_close())
                _closing.add(task)
                task.add_done_callback(_closing.discard)

    return ServerSentEvent(gen(), headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def closed_stream() -> ServerSentEvent:
    async def gen() -> AsyncGenerator[ServerSentEventMessage, None]:
        return
        yield  # pragma: no cover - makes this an (empty) async generator

    return ServerSentEvent(gen())
