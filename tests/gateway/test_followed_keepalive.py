"""A followed stream sends its keep-alives (and so asks again whether its key may still read)
even while every event it gets is one it drops: a thread's stream follows its whole project and
keeps only the thread's events, and a busy project reset its quiet timer for ever."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

from crewyard.gateway.sse import followed

PING_S = 0.3


class Busy:
    """A store whose followed subject has an event every 20 ms."""

    prefix = "crewyard.evt"

    @contextlib.asynccontextmanager
    async def follow(self, subject: str, start_seq: int) -> AsyncIterator[asyncio.Queue[Any]]:
        queue: asyncio.Queue[Any] = asyncio.Queue()

        async def feed() -> None:
            seq = start_seq
            while True:
                await queue.put(SimpleNamespace(seq=seq))
                seq += 1
                await asyncio.sleep(0.02)

        feeder = asyncio.create_task(feed())
        try:
            yield queue
        finally:
            feeder.cancel()


async def test_keep_alives_go_out_while_every_event_is_dropped() -> None:
    batches: list[list[Any]] = []
    stream = followed(Busy(), "crewyard.evt.p.>", 1, PING_S, keep=lambda raw: False)  # type: ignore[arg-type]

    async def read() -> None:
        async for batch in stream:
            batches.append(batch)

    reader = asyncio.create_task(read())
    await asyncio.sleep(PING_S * 6)
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reader
    keep_alives = batches[1:]  # the first says the consumer exists
    assert len(keep_alives) >= 2 and all(b == [] for b in keep_alives), batches
