"""One ``asyncio.Lock`` per key, for work that must not run twice at once for the same thing (an
environment built, a source unpacked, a run's events handled) while other keys go on.

A key's lock exists only while someone holds it or waits for it: the table does not grow with
every digest or run ever seen. Waiters on one key are served first come, first served, as
``asyncio.Lock`` serves them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class KeyedLock:
    def __init__(self) -> None:
        #: Per key in use: its lock and how many tasks hold it or wait for it.
        self._keys: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Hold ``key``'s lock for the ``async with`` block (waiting while another task has it)."""
        lock, users = self._keys.get(key) or (asyncio.Lock(), 0)
        self._keys[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:  # also when the wait was cancelled: the count stays true, the key goes when unused
            lock, users = self._keys[key]
            if users == 1:
                del self._keys[key]
            else:
                self._keys[key] = (lock, users - 1)

    def __len__(self) -> int:
        """How many keys are held or awaited now."""
        return len(self._keys)
