"""A run's feed keeps only its newest events (``CREWYARD_SSE_WINDOW``), and less while all feeds
together hold more than ``CREWYARD_SSE_MEMORY``: a run's events may be 32 MiB, and a key may
follow a thousand runs. A reader that needs what its feed dropped reads it from the stream, then
goes on from the feed: every event once, in order, whenever it came and however slowly it reads."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from crewyard.core.events import Log, make_event
from crewyard.core.ids import new_id
from crewyard.eventstore import EventStore, StoreUnavailable
from crewyard.gateway import hub as hub_module
from crewyard.gateway.hub import ITEM_BYTES, Feed, Hub, Memory
from crewyard.gateway.sse import RETRY_HINT, SLICE_BYTES, Batches, Closing, sse_response
from crewyard.settings import SettingsError, load


async def _append(
    store: EventStore, run_id: str, count: int, size: int = 10_000, seqs: list[int] | None = None
) -> list[str]:
    """``count`` log events of about ``size`` bytes on ``run_id``; their messages, in order (and
    their stream sequences into ``seqs``)."""
    messages = []
    for _ in range(count):
        message = new_id("evt") + "x" * size
        event = make_event(Log(message=message), project="p", aggregate_id=run_id, event_id=new_id("evt"))
        seq = await store.append(event)
        if seqs is not None:
            seqs.append(seq)
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
        assert hub.memory.held == feed.size == sum(len(text) + ITEM_BYTES for _, _, text in feed.items)

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


async def test_past_the_memory_of_all_feeds_the_largest_keep_only_a_little(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_module, "TIGHT_BYTES", 25_000)
    hub = Hub(store, ping_s=15, memory=Memory(window=100_000, most=150_000))
    runs = [new_id("run") for _ in range(4)]
    try:
        for run_id in runs:
            await _append(store, run_id, 6)  # ~63 KB each: inside a feed's window
            await _read(hub.acquire(run_id), 6)
        feeds = [hub.feeds[run_id] for run_id in runs]
        assert hub.memory.held == sum(feed.size for feed in feeds)
        # Four windows' worth is ~250 KB: past 150 KB the largest feeds were cut to half of
        # TIGHT_BYTES (and their newest event), one of the first two among them, though they no
        # longer grew (a quiet feed holds memory as much as a busy one); a feed under
        # TIGHT_BYTES that grows does not look (at most that much over).
        assert hub.memory.held <= 150_000 + 25_000, [feed.size for feed in feeds]
        cut = [feed for feed in feeds if feed.base > 0]
        assert any(feed.base > 0 for feed in feeds[:2]), [(f.base, f.size) for f in feeds]
        assert all(feed.size <= 12_500 + 11_000 for feed in cut), [(f.base, f.size) for f in feeds]
        # Each still serves its whole run.
        for feed in feeds:
            assert len(await _collect(feed, 1, 6)) == 6

        # A single event larger than TIGHT_BYTES is kept (a feed's newest always is), and the
        # squeeze ends.
        huge = new_id("run")
        await _append(store, huge, 1, size=200_000)
        await _read(hub.acquire(huge), 1)
        assert hub.feeds[huge].size > 200_000 and len(hub.feeds[huge].items) == 1
        runs.append(huge)
        for run_id in runs:
            hub.release(run_id)
            hub._drop(run_id)
        assert hub.memory.held == 0 and not hub.feeds and not hub.memory.feeds
    finally:
        hub.close()


def test_the_window_and_the_memory_are_settings_checked_at_start(tmp_path: Path) -> None:
    settings = load(tmp_path, sse_window_bytes=1 << 20, sse_memory_bytes=8 << 20)
    assert (settings.sse_window_bytes, settings.sse_memory_bytes) == (1 << 20, 8 << 20)
    for window, memory in ((1000, 8 << 20), (16 << 20, 8 << 20), (-1, 8 << 20)):
        with pytest.raises(SettingsError, match="CREWYARD_SSE_WINDOW"):
            load(tmp_path, sse_window_bytes=window, sse_memory_bytes=memory)


async def test_a_reader_past_what_was_dropped_opens_no_consumer_of_its_own(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A client resuming after the run's 40th event, on a feed that is still loading: the feed
    # drops older events under it, none of which it needs — it must not read the stream itself
    # (one consumer made and deleted per drop, and a hiccup of the store ended its stream).
    opened: list[int] = []  # where the consumers other than the feed's own started
    reads, follows = store.read_batches, store.follow

    def counted(*args: Any, **kwargs: Any) -> Any:
        opened.append(kwargs.get("start_seq", 1))
        return reads(*args, **kwargs)

    def followed(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("start_seq", 1) != 1:
            opened.append(kwargs["start_seq"])
        return follows(*args, **kwargs)

    monkeypatch.setattr(store, "read_batches", counted)
    monkeypatch.setattr(store, "follow", followed)
    hub = Hub(store, ping_s=15, memory=Memory(window=60_000, most=150_000))
    run_id = new_id("run")
    try:
        seqs: list[int] = []
        await _append(store, run_id, 40, seqs=seqs)
        feed = hub.acquire(run_id)
        batches = feed.batches(seqs[-1] + 1)
        waiting = asyncio.ensure_future(anext(batches))  # placed before the feed read anything
        more = await _append(store, run_id, 3, seqs=seqs)
        async with asyncio.timeout(30):
            got = await waiting
            while len(got) < 3:
                got += await anext(batches)
        await batches.aclose()
        assert feed.dropped_through >= 1 and [_message(text) for _, _, text in got] == more
        assert [seq for seq, _, _ in got] == seqs[40:] and opened == []
    finally:
        hub.close()


async def test_history_reads_about_a_slice_at_a_time_and_nothing_ahead(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetched: list[int] = []
    reads = store.read_batches

    async def counted(*args: Any, **kwargs: Any) -> Any:
        async for raws in reads(*args, **kwargs):
            fetched.append(len(raws))
            yield raws

    monkeypatch.setattr(store, "read_batches", counted)
    hub = Hub(store, ping_s=15, memory=Memory(window=100_000, most=1 << 30))
    run_id = new_id("run")
    try:
        await _append(store, run_id, 80)  # 800 KB: three slices and more
        feed = hub.acquire(run_id)
        await _read(feed, 80)
        older = feed.history(1)
        _next, first = await anext(older)
        # One read of about SLICE_BYTES (10 KB events: 25 of them), none before it was asked for.
        assert fetched == [len(first)] and 20 <= len(first) <= SLICE_BYTES // 10_000 + 1, fetched
        await older.aclose()
    finally:
        hub.close()


@pytest.mark.parametrize(
    "failure", [TimeoutError("the stream did not answer"), StoreUnavailable("broker away")]
)
async def test_a_source_that_cannot_read_the_store_ends_its_stream_with_a_retry_hint(
    failure: Exception,
) -> None:
    # The console's live view reads from its feed, which reads what it dropped from the stream
    # mid-response: a store that fails then ends the stream so the browser resumes, not with an
    # aborted connection (StoreUnavailable) or silently (TimeoutError).
    async def source() -> Batches:
        yield [(7, "log", b"id: 7\nevent: log\ndata: {}\n\n")]
        raise failure

    response = sse_response(source(), closing=Closing())
    written = [chunk async for chunk in response.iterator]
    assert written == [b"id: 7\nevent: log\ndata: {}\n\n", RETRY_HINT]
