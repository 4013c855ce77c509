"""A run's feed keeps only its newest events (``CREWYARD_SSE_WINDOW``), and less while all feeds
together hold more than ``CREWYARD_SSE_MEMORY``: a run's events may be 32 MiB, and a key may
follow a thousand runs. A reader that needs what its feed dropped reads it from the stream, then
goes on from the feed: every event once, in order, whenever it came and however slowly it reads."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from crewyard.core.events import Log, make_event
from crewyard.core.ids import new_id
from crewyard.eventstore import EventStore
from crewyard.gateway import hub as hub_module
from crewyard.gateway.hub import Feed, Hub, Memory
from crewyard.settings import SettingsError, load


async def _append(store: EventStore, run_id: str, count: int, size: int = 10_000) -> list[str]:
    """``count`` log events of about ``size`` bytes on ``run_id``; their messages, in order."""
    messages = []
    for _ in range(count):
        message = new_id("evt") + "x" * size
        await store.append(
            make_event(Log(message=message), project="p", aggregate_id=run_id, event_id=new_id("evt"))
        )
        messages.append(message)
    return messages


async def _read(feed: Feed, count: int) -> None:
    """Until the feed has read ``count`` events (kept or dropped)."""
    async with asyncio.timeout(30):
        while feed.base + len(feed.items) < count:
            await feed.waiter()  # woken by each event the feed reads


async def _collect(feed: Feed, start_seq: int, count: int) -> list[tuple[int, str]]:
    """``count`` events of ``feed.batches(start_seq)``: (sequence, message) each."""
    got: list[tuple[int, str]] = []
    batches = feed.batches(start_seq)
    try:
        async with asyncio.timeout(30):
            while len(got) < count:
                got += [(seq, _message(text)) for seq, _type, text in await anext(batches)]
    finally:
        await batches.aclose()
    return got


def _message(text: bytes) -> str:
    return text.split(b'"message":"', 1)[1].split(b'"', 1)[0].decode()


async def test_a_feed_keeps_its_newest_events_and_a_late_reader_gets_the_rest_from_the_stream(
    store: EventStore,
) -> None:
    hub = Hub(store, ping_s=15, memory=Memory(window=60_000, most=150_000))
    run_id = new_id("run")
    try:
        messages = await _append(store, run_id, 40)
        feed = hub.acquire(run_id)
        await _read(feed, 40)
        assert feed.base > 0 and feed.size <= 60_000 and len(feed.items) < 40
        assert hub.memory.held == feed.size == sum(len(text) for _, _, text in feed.items)

        everything = await _collect(feed, 1, 40)
        assert [m for _, m in everything] == messages
        seqs = [seq for seq, _ in everything]
        assert seqs == sorted(set(seqs))
        # From the middle of what was dropped, and from what is still kept.
        assert await _collect(feed, seqs[5], 35) == everything[5:]
        assert await _collect(feed, seqs[-3], 3) == everything[-3:]

        # A reader that falls behind while the run goes on: what the feed dropped meanwhile
        # comes from the stream, then the rest from the feed, none twice.
        batches = feed.batches(1)
        first = await anext(batches)
        more = await _append(store, run_id, 30)
        await _read(feed, 70)
        assert feed.dropped_through > first[-1][0]  # the reader's next events are gone from it
        got = [(seq, _message(text)) for seq, _type, text in first]
        async with asyncio.timeout(30):
            while len(got) < 70:
                got += [(seq, _message(text)) for seq, _type, text in await anext(batches)]
        await batches.aclose()
        assert [m for _, m in got] == messages + more
        assert [seq for seq, _ in got] == sorted({seq for seq, _ in got})
    finally:
        hub.close()
    assert hub.memory.held == 0


async def test_past_the_hub_budget_a_growing_feed_keeps_only_a_little(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_module, "TIGHT_BYTES", 25_000)
    hub = Hub(store, ping_s=15, memory=Memory(window=100_000, most=150_000))
    runs = [new_id("run") for _ in range(4)]
    try:
        for run_id in runs:
            await _append(store, run_id, 6)  # ~62 KB each: inside a feed's window
            await _read(hub.acquire(run_id), 6)
        feeds = [hub.feeds[run_id] for run_id in runs]
        assert hub.memory.held == sum(feed.size for feed in feeds)
        # Two feeds fit the budget whole; past it, the feeds that grew kept about TIGHT_BYTES
        # (and their newest event), where their windows would have held all six.
        assert [feed.base for feed in feeds[:2]] == [0, 0] and all(f.size > 60_000 for f in feeds[:2])
        for feed in feeds[2:]:
            assert feed.base > 0 and feed.size <= 25_000 + 11_000, (feed.base, feed.size)
        # Each still serves its whole run.
        for feed in feeds:
            assert len(await _collect(feed, 1, 6)) == 6
        for run_id in runs:
            hub.release(run_id)
            hub._drop(run_id)
        assert hub.memory.held == 0 and not hub.feeds
    finally:
        hub.close()


def test_the_window_and_the_memory_are_settings_checked_at_start(tmp_path: Path) -> None:
    settings = load(tmp_path, sse_window_bytes=1 << 20, sse_memory_bytes=8 << 20)
    assert (settings.sse_window_bytes, settings.sse_memory_bytes) == (1 << 20, 8 << 20)
    for window, memory in ((1000, 8 << 20), (16 << 20, 8 << 20), (-1, 8 << 20)):
        with pytest.raises(SettingsError, match="CREWYARD_SSE_WINDOW"):
            load(tmp_path, sse_window_bytes=window, sse_memory_bytes=memory)
