"""Merging two byte streams into one iterator of (stream, line)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

MAX_LINE = 64 * 1024


async def merge_lines(streams: dict[str, asyncio.StreamReader]) -> AsyncIterator[tuple[str, bytes]]:
    """Yield lines from every reader as they arrive; over-long lines are cut into pieces."""
    queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()

    async def pump(name: str, reader: asyncio.StreamReader) -> None:
        try:
            buf = b""
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    await queue.put((name, line))
                while len(buf) > MAX_LINE:
                    await queue.put((name, buf[:MAX_LINE]))
                    buf = buf[MAX_LINE:]
            if buf:
                await queue.put((name, buf))
        finally:
            await queue.put(None)

    tasks = [asyncio.create_task(pump(n, r)) for n, r in streams.items()]
    open_streams = len(tasks)
    try:
        while open_streams:
            item = await queue.get()
            if item is None:
                open_streams -= 1
                continue
            yield item
    finally:
        for t in tasks:
            t.cancel()
