"""Every aggregate of one kind (webhooks, schedules…), folded in memory and brought up to date by
reading only what was appended since the last look (one batch direct get).

``horizon`` is a stream sequence up to which the index has seen everything: a service deciding
about the event at sequence S refreshes first unless ``S <= horizon``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

from crewyard.core.events import InvalidEvent, Recorded
from crewyard.eventstore import EventStore, set_aside

S = TypeVar("S")


class AggregateIndex(Generic[S]):
    def __init__(
        self,
        store: EventStore,
        kind: str,
        new: Callable[[str], S],
        evolve: Callable[[S, Recorded], S],
        *,
        reader: str,
    ) -> None:
        self.store, self.kind, self.new, self.evolve, self.reader = store, kind, new, evolve, reader
        self.items: dict[str, S] = {}
        self.horizon = 0
        self._read = 0
        self._lock = asyncio.Lock()  # two refreshes at once would apply the same events twice

    async def refresh(self) -> list[str]:
        """Read what was appended since the last refresh; returns the ids that changed."""
        async with self._lock:
            return await self._refresh()

    async def _refresh(self) -> list[str]:
        last = await self.store.last_seq()
        raws = await self.store.load_raw(f"{self.store.prefix}.*.{self.kind}.*.>", start_seq=self._read + 1)
        changed: list[str] = []
        for raw in raws:
            self._read = max(self._read, raw.seq)
            try:
                rec = raw.decode(self.store.prefix)
            except InvalidEvent as exc:
                set_aside(self.reader, raw.seq, raw.subject, exc)
                continue
            agg_id = rec.event.aggregate_id
            self.evolve(self.items.setdefault(agg_id, self.new(agg_id)), rec)
            changed.append(agg_id)
        self.horizon = max(self.horizon, last, self._read)
        return changed

    async def up_to(self, seq: int) -> None:
        if seq > self.horizon:
            async with self._lock:
                if seq > self.horizon:  # not done meanwhile by whoever held the lock
                    await self._refresh()
