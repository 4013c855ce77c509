"""A run's feed stays warm a while after its last client leaves, but only so many feeds, holding
so many bytes in all, wait so: a caller opening and closing streams on one run after another
made a feed of each (a run's events may be 32 MiB) that outlived its stream by half a minute."""

from __future__ import annotations

import asyncio

import pytest

from crewyard.core.events import Log, make_event
from crewyard.core.ids import new_id
from crewyard.eventstore import EventStore
from crewyard.gateway import hub as hub_module
from crewyard.gateway.hub import Hub


async def _filled(hub: Hub, run_id: str, size: int) -> None:
    """Follow ``run_id`` until its feed holds at least ``size`` bytes of events."""
    feed = hub.feeds[run_id]
    async with asyncio.timeout(30):
        while feed.size < size:
            await feed.waiter()  # woken by each event the feed reads


async def test_idle_feeds_are_bounded_in_number_and_bytes_longest_idle_dropped_first(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_module, "IDLE_MOST", 4)
    monkeypatch.setattr(hub_module, "IDLE_BYTES", 250_000)
    hub = Hub(store, ping_s=15)
    try:
        # Runs of no events (a caller may name any): only the number bounds them.
        quiet = [new_id("run") for _ in range(6)]
        for run_id in quiet:
            hub.acquire(run_id)
        for run_id in quiet:
            hub.release(run_id)
        assert list(hub.idle) == quiet[2:] and set(hub.feeds) == set(quiet[2:])

        # A client that comes back finds its feed warm, and it is no longer idle.
        back = hub.acquire(quiet[3])
        assert back is hub.feeds[quiet[3]] and quiet[3] not in hub.idle

        # Runs of 100 KB of events each: two fit the bytes, the third drops the longest idle.
        loud = [new_id("run") for _ in range(3)]
        for run_id in loud:
            for _ in range(10):
                event = make_event(
                    Log(message="x" * 10_000), project="p", aggregate_id=run_id, event_id=new_id("evt")
                )
                await store.append(event)
            hub.acquire(run_id)
            await _filled(hub, run_id, 100_000)
        for run_id in loud:
            hub.release(run_id)
        assert loud[0] not in hub.feeds and {loud[1], loud[2]} <= set(hub.feeds)
        assert sum(hub.feeds[r].size for r in hub.idle) <= 250_000 and len(hub.idle) <= 4
        # The feed with a client was never dropped, however many went idle around it.
        assert hub.feeds[quiet[3]] is back and back.clients == 1
        dropped = [r for r in quiet if r not in hub.feeds]
        assert dropped and all(r not in hub.idle for r in dropped)
    finally:
        hub.close()
