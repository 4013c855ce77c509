"""Writing protocol lines to a runtime's stdin without ever blocking the runner on a slow crew."""

from __future__ import annotations

import asyncio
import contextlib


class StdinWriter:
    """Serialised writes to one subprocess's stdin; a closed pipe (the runtime has exited) is quiet."""

    def __init__(self, stream: asyncio.StreamWriter | None) -> None:
        self._stream = stream
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    async def send(self, line: bytes) -> None:
        async with self._lock:
            if self._stream is None or self._stream.is_closing():
                return
            try:
                self._stream.write(line)
                await self._stream.drain()
            except (BrokenPipeError, ConnectionResetError):
                self._stream = None

    def send_soon(self, data: bytes) -> None:
        """Send in the background: a runtime busy writing output must not hold up the runner's
        reading of it (a blocked write on each side would be a deadlock)."""
        task = asyncio.create_task(self.send(data))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._stream is not None:
            with contextlib.suppress(Exception):
                self._stream.close()
            self._stream = None
