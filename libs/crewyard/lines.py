"""Cutting byte streams into lines (a run's output, a build's); merging two streams into one.

Two policies. Text (``stderr``): a line longer than :data:`MAX_LINE` is cut into pieces, so that
no log event grows past it; every piece but the last is exactly the limit long, which is how the
runner knows a secret may straddle the cut (it masks a secret's fragment at either side of it).
Protocol (``proto``): a line is a message and is kept whole up to a limit — a ``result`` may
legitimately be megabytes — and a longer one is dropped as it streams past (never held in memory)
and reported as ``(OVERFLOW, its length)``, so the runner can end the run naming the limit.
Buffers are bytearrays scanned once: a line of megabytes costs linear time.

Merged lines wait in a :class:`LineQueue` of bounded size: a reader that finds it full stops
reading until the consumer takes some, so a crew writing faster than its run is handled waits
in its pipe (it held the runner's memory: hundreds of megabytes while a run's reader waited).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

MAX_LINE = 64 * 1024
#: The stream name of a protocol line that was longer than its limit (the data is its length).
OVERFLOW = "proto-overflow"
#: Room for a message's own fields around a result of the run's output limit.
PROTO_MARGIN = 64 * 1024
#: The bytes of lines a :class:`LineQueue` holds before its writers wait (plus one line each).
QUEUE_BYTES = 4 * 1024 * 1024

Line = tuple[str, bytes]


class LineQueue:
    """Lines from one or more writers to one reader, at most ``max_bytes`` of them held (a writer
    that finds it full waits; each may add one line past the bound). ``close`` (no await: it may
    be called from a ``finally``) ends it once the reader has taken what is left."""

    def __init__(self, max_bytes: int = QUEUE_BYTES) -> None:
        self._lines: deque[Line] = deque()
        self._bytes, self._max, self._closed = 0, max_bytes, False
        self._room, self._more = asyncio.Event(), asyncio.Event()
        self._room.set()

    @property
    def held(self) -> int:
        """The bytes of lines waiting for the reader."""
        return self._bytes

    async def put(self, line: Line) -> None:
        while self._bytes >= self._max:
            self._room.clear()
            await self._room.wait()
        self._lines.append(line)
        self._bytes += len(line[1])
        self._more.set()

    def close(self) -> None:
        self._closed = True
        self._more.set()

    async def get(self) -> Line | None:
        """The next line; None once closed and empty."""
        while not self._lines:
            if self._closed:
                return None
            self._more.clear()
            await self._more.wait()
        line = self._lines.popleft()
        self._bytes -= len(line[1])
        if self._bytes < self._max:
            self._room.set()
        return line


class LineSplitter:
    """Bytes in, complete lines out, under one of the two policies above."""

    def __init__(self, name: str, limit: int = MAX_LINE, *, whole: bool = False) -> None:
        self.name, self.limit, self.whole = name, limit, whole
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf known to hold no newline
        self._dropped = 0  # bytes of an over-long line dropped so far

    def feed(self, chunk: bytes) -> list[tuple[str, bytes]]:
        out: list[tuple[str, bytes]] = []
        self._buf += chunk
        while (end := self._buf.find(b"\n", self._scanned)) >= 0:
            line = bytes(self._buf[:end])
            del self._buf[: end + 1]
            self._scanned = 0
            out.extend(self._pieces(line))
        self._scanned = len(self._buf)
        if len(self._buf) > self.limit:
            if self.whole:  # an over-long message: let it stream past
                self._dropped += len(self._buf)
                self._buf.clear()
                self._scanned = 0
            else:
                while len(self._buf) > self.limit:
                    out.append((self.name, bytes(self._buf[: self.limit])))
                    del self._buf[: self.limit]
                self._scanned = len(self._buf)
        return out

    def _line(self, line: bytes) -> tuple[str, bytes]:
        if self._dropped:
            size, self._dropped = self._dropped + len(line), 0
            return OVERFLOW, str(size).encode()
        if self.whole and len(line) > self.limit:
            return OVERFLOW, str(len(line)).encode()
        return self.name, line

    def finish(self) -> list[tuple[str, bytes]]:
        """What is left once the stream closed (a last line without newline)."""
        if not self._buf and not self._dropped:
            return []
        line = bytes(self._buf)
        self._buf.clear()
        return self._pieces(line)

    def _pieces(self, line: bytes) -> list[tuple[str, bytes]]:
        """A text line in pieces of at most the limit (its newline may come in the same chunk as
        more than the limit of it); a protocol line whole."""
        out = []
        if not self.whole:
            while len(line) > self.limit:
                out.append((self.name, line[: self.limit]))
                line = line[self.limit :]
        out.append(self._line(line))
        return out


def splitters(proto_limit: int) -> dict[str, LineSplitter]:
    return {
        "proto": LineSplitter("proto", proto_limit + PROTO_MARGIN, whole=True),
        "stderr": LineSplitter("stderr"),
    }


async def merge_lines(
    streams: dict[str, asyncio.StreamReader], proto_limit: int = MAX_LINE
) -> AsyncIterator[tuple[str, bytes]]:
    """Yield lines from every reader as they arrive (see the module doc for long lines); a reader
    waits while :data:`QUEUE_BYTES` of lines wait for the caller."""
    queue = LineQueue()
    cutters = splitters(proto_limit)
    open_streams = len(streams)

    async def pump(name: str, reader: asyncio.StreamReader) -> None:
        nonlocal open_streams
        cutter = cutters[name]
        try:
            while chunk := await reader.read(65536):
                for item in cutter.feed(chunk):
                    await queue.put(item)
            for item in cutter.finish():
                await queue.put(item)
        finally:
            open_streams -= 1
            if not open_streams:
                queue.close()

    tasks = [asyncio.create_task(pump(n, r)) for n, r in streams.items()]
    if not tasks:
        queue.close()
    try:
        while (item := await queue.get()) is not None:
            yield item
    finally:
        for t in tasks:
            t.cancel()
