"""Shared run feeds: one stream consumer per run per gateway, however many clients follow it.

Clients are served by :mod:`.feedstream`: a client catching up sends what it missed itself,
then the feed writes each new event to every caught-up client in one pass (:meth:`Feed._push`).

A feed reads its run's events once (from sequence 1, filtered on the server), renders each to
SSE text once, and keeps the newest of them in order in memory while anyone follows the run: at
most a window of bytes (``CREWYARD_SSE_WINDOW``; half of them dropped, oldest first, when it is
full); and while the feeds of the gateway hold more than ``CREWYARD_SSE_MEMORY`` in all
(:class:`Memory`), the largest of them keep only their newest ``TIGHT_BYTES`` — a run's events
may be 32 MiB, and a key may follow a thousand runs. A client that needs what its feed no longer
holds (it came late, resumed from early on, or read too slowly) reads that part from the stream
with a pull consumer of its own, about a slice at a time and only as it writes them
(:meth:`Feed.history`), then rejoins the feed. Keep-alives are
the feed's too: after ``ping_s`` without an event it wakes every client once, and each writes a
ping — rather than each client timing its own wait, which cost a timer per client and event
(9 of the ~12 µs a delivery took the feed, measured with 1,000 clients). A client, new or
resuming with ``Last-Event-ID``, finds its place by sequence and then waits for more. A feed
stays a little while after its last client leaves, so reconnecting clients find it warm — but
only ``IDLE_MOST`` feeds holding ``IDLE_BYTES`` of events in all may wait so, the longest idle
dropped first: a run's events may be 32 MiB, and a caller opening and closing streams on one run
after another made a feed of each that outlived its stream.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator
from typing import Protocol

from crewyard import metrics
from crewyard.core import subjects
from crewyard.eventstore import EventStore, StoreUnavailable

from .sse import SLICE_BYTES, Batches, render

LINGER_S = 30.0
#: What the largest feeds keep while all feeds hold more than their :class:`Memory` allows.
TIGHT_BYTES = 64 << 10
#: What a kept event costs besides its text: its tuple, its sequence, two list slots.
ITEM_BYTES = 160
#: The most events one read of :meth:`Feed.history` asks for (fewer when the run's are large).
HISTORY_MOST = 256
#: Feeds without clients kept warm at once, and the bytes of rendered events they may hold in all.
IDLE_MOST = 64
IDLE_BYTES = 128 << 20
_PUSHED = metrics.SSE_DELIVERIES.labels("pushed")
_HISTORY = metrics.SSE_DELIVERIES.labels("history")
log = logging.getLogger("crewyard.gateway")


class Pushed(Protocol):
    """A client the feed writes to itself, as each event arrives (:mod:`.feedstream`)."""

    def push(self, seq: int, event_type: str, frame: bytes) -> bool:
        """Write the feed's newest event (``frame``: its HTTP chunk) or leave it to the client's
        own response (it then leaves :attr:`Feed.pushed`); whether it was written."""
        ...

    def wake(self) -> None: ...


class Memory:
    """The bytes of rendered events one feed may keep (``window``), all of a gateway's feeds may
    keep (``most``), and all of them keep now (``held``), and those feeds."""

    __slots__ = ("feeds", "held", "most", "window")

    def __init__(self, window: int = 16 << 20, most: int = 256 << 20) -> None:
        self.window, self.most, self.held = window, most, 0
        self.feeds: dict[Feed, None] = {}

    def squeeze(self) -> None:
        """Past ``most``: the largest feeds keep ``TIGHT_BYTES // 2`` each, until the feeds hold
        no more than ``most`` or none holds more than ``TIGHT_BYTES`` (a look at every feed, only
        when a feed over ``TIGHT_BYTES`` grows past the budget; a feed's newest event is always
        kept, however large)."""
        for feed in sorted(self.feeds, key=lambda feed: feed.size, reverse=True):
            if self.held <= self.most or feed.size <= TIGHT_BYTES:
                return
            feed._drop_to(TIGHT_BYTES // 2)


class Feed:
    """One run's events as its clients read them. Positions in the feed are absolute: the item at
    position ``i`` is ``items[i - base]``, and ``base`` grows as the oldest items are dropped."""

    def __init__(
        self, store: EventStore, filter_subject: str, ping_s: float, memory: Memory | None = None
    ) -> None:
        self.store = store
        self.filter_subject = filter_subject
        self.ping_s = ping_s
        self.memory = memory if memory is not None else Memory()
        self.seqs: list[int] = []
        self.items: list[tuple[int, str, bytes]] = []
        self.size = 0  # bytes of the rendered events in ``items``, with ``ITEM_BYTES`` each
        self.largest = 0  # the largest rendered event of the run so far
        self.base = 0  # how many items were dropped from the front
        self.dropped_through = 0  # the sequence of the last item dropped
        self.clients = 0
        #: Set once the feed has a consumer on the stream (it may still be replaying).
        self.reading = asyncio.Event()
        #: The futures of the clients waiting for news: each is resolved once, by the next wake.
        self._waiters: list[asyncio.Future[None]] = []
        #: The clients written straight from the feed, in the order they came (see :meth:`_push`).
        self.pushed: dict[Pushed, None] = {}
        self._last = time.monotonic()  # when the clients were last woken
        self._task: asyncio.Task[None] | None = None
        self._keepalive: asyncio.Task[None] | None = None
        self._linger: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self.memory.feeds[self] = None
        if self._task is None:
            self._task = asyncio.create_task(self._pump())
            self._keepalive = asyncio.create_task(self._keep_alive())

    def _wake(self) -> None:
        self._last = time.monotonic()
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():  # a client may have woken its own (it went away, shutdown)
                waiter.set_result(None)

    def waiter(self) -> asyncio.Future[None]:
        """A future the next wake (news or keep-alive) resolves; its client may resolve it
        itself to stop waiting (it went away, the gateway shuts down)."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return waiter

    async def _keep_alive(self) -> None:
        """Wake every client after ``ping_s`` without news: each then writes a keep-alive."""
        while True:
            quiet = time.monotonic() - self._last
            if quiet >= self.ping_s:
                self._wake()
                for client in list(self.pushed):
                    client.wake()
                quiet = 0.0
            await asyncio.sleep(self.ping_s - quiet)

    async def _pump(self) -> None:
        while True:
            start = self.seqs[-1] + 1 if self.seqs else 1
            try:
                async with self.store.follow(self.filter_subject, start_seq=start) as queue:
                    self.reading.set()
                    while True:
                        raw = await queue.get()
                        if self.seqs and raw.seq <= self.seqs[-1]:
                            continue  # a consumer recreated after a broker restart may repeat one
                        rendered = render(raw, self.store.prefix)
                        if rendered is None:
                            continue  # not a valid event: set aside
                        self.seqs.append(raw.seq)
                        self.items.append((raw.seq, *rendered))
                        cost, memory = len(rendered[1]) + ITEM_BYTES, self.memory
                        self.size += cost
                        memory.held += cost
                        self.largest = max(self.largest, len(rendered[1]))
                        if self.size > memory.window:
                            self._drop_to(memory.window // 2)
                        if memory.held > memory.most and self.size > TIGHT_BYTES:
                            memory.squeeze()
                        if self.pushed:
                            self._push(raw.seq, *rendered)
                        self._wake()
            except StoreUnavailable:
                await asyncio.sleep(1.0)

    def _drop_to(self, limit: int) -> None:
        """Drop the oldest items until the feed holds ``limit`` bytes or less (the newest one
        always kept): clients that still need them read them from the stream."""
        count, size = 0, self.size
        while size > limit and count < len(self.items) - 1:
            size -= len(self.items[count][2]) + ITEM_BYTES
            count += 1
        if count:
            self.dropped_through = self.seqs[count - 1]
            del self.items[:count], self.seqs[:count]
            self.memory.held -= self.size - size
            self.size, self.base = size, self.base + count

    def position(self, seq: int) -> int:
        """Where the first event from ``seq`` on is in the feed, or will be; below ``base`` when
        the feed no longer holds it (the client reads it with :meth:`history`)."""
        if seq <= self.dropped_through:
            return self.base - 1
        return self.base + bisect.bisect_left(self.seqs, seq)

    async def history(self, seq: int) -> AsyncGenerator[tuple[int, list[tuple[int, str, bytes]]], None]:
        """What the feed no longer holds from ``seq`` on (nothing, and no consumer, when it holds
        that), read from the stream by a pull consumer of the caller's own: each read asks for
        about ``SLICE_BYTES`` of events (by the run's largest so far), and only once the caller
        took the last batch — a client that does not read holds one batch, not its run. Each batch
        comes with the sequence the next one starts from (it may be empty: events that are not
        valid are set aside); it ends once the feed holds everything from there on. Every one of
        those events is in the stream (the feed read it), so no answer within the store's read
        timeout is the store failing: :class:`TimeoutError`."""
        if seq > self.dropped_through:
            return
        store = self.store
        idle = min(1.0, store.read_timeout)

        def size() -> int:
            return max(1, min(HISTORY_MOST, SLICE_BYTES // max(1, self.largest)))

        reads = store.read_batches(self.filter_subject, start_seq=seq, batch=size, idle_s=idle)
        async with contextlib.aclosing(reads):
            quiet = 0.0
            async for raws in reads:
                if not raws:
                    quiet += idle
                    if quiet >= store.read_timeout:
                        raise TimeoutError("the stream did not answer")
                    continue
                quiet = 0.0
                batch: list[tuple[int, str, bytes]] = []
                for raw in raws:
                    if raw.seq > self.dropped_through:
                        seq = raw.seq  # the feed holds it, and what follows
                        break
                    if raw.seq >= seq:
                        seq = raw.seq + 1
                        rendered = render(raw, store.prefix)
                        if rendered is not None:
                            batch.append((raw.seq, *rendered))
                _HISTORY.inc(len(batch))
                yield seq, batch
                if seq > self.dropped_through:
                    return

    def _push(self, seq: int, event_type: str, text: bytes) -> None:
        """The newest event to every pushed client, in one pass: its HTTP chunk is framed once and
        each client's connection gets one write — no coroutine woken per client and event, which
        is what most of a delivery cost when every client wrote its own (measured: 1,000 clients
        on one run, 33 µs of the gateway's CPU per delivery, a bare fan-out 12 µs)."""
        frame = b"%x\r\n%s\r\n" % (len(text), text)
        written = 0
        for client in list(self.pushed):
            try:
                written += client.push(seq, event_type, frame)
            except Exception:  # never the feed's end: that client's own response carries on
                log.exception("writing an SSE client from its feed failed")
                self.pushed.pop(client, None)
                client.wake()
        if written:
            _PUSHED.inc(written)

    async def wait_reading(self, timeout: float) -> bool:
        """Whether the feed reads the stream, waiting up to ``timeout`` for its first consumer."""
        if not self.reading.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self.reading.wait()
        return self.reading.is_set()

    async def batches(self, start_seq: int) -> Batches:
        """Everything from ``start_seq`` on, in batches; an empty batch when the feed was quiet
        for ``ping_s`` (at most ``ping_s`` after the client's last batch)."""
        index = self.position(start_seq)
        while True:
            if index < self.base:  # what comes next is no longer held: from the stream
                async with contextlib.aclosing(self.history(start_seq)) as older:
                    async for next_seq, batch in older:
                        start_seq = next_seq
                        if batch:
                            yield batch
                index = self.position(start_seq)
            elif index < self.base + len(self.items):
                at = index - self.base
                if self.seqs[at] < start_seq:  # the feed may be filling up after the client came
                    index = self.position(start_seq)
                    continue
                batch = self.items[at:]
                index += len(batch)
                start_seq = batch[-1][0] + 1
                yield batch
            else:
                await self.waiter()
                if index >= self.base + len(self.items):
                    yield []  # woken by the keep-alive: nothing new

    def close(self) -> None:
        for task in (self._task, self._keepalive):
            if task is not None:
                task.cancel()
        self.memory.held -= self.size  # its events are no longer the hub's: gone with the feed
        self.memory.feeds.pop(self, None)
        self.size = 0


class Hub:
    def __init__(self, store: EventStore, ping_s: float, memory: Memory | None = None) -> None:
        self.store = store
        self.ping_s = ping_s
        self.feeds: dict[str, Feed] = {}
        self.memory = memory if memory is not None else Memory()
        #: The feeds without clients, longest idle first.
        self.idle: OrderedDict[str, None] = OrderedDict()

    def acquire(self, run_id: str) -> Feed:
        feed = self.feeds.get(run_id)
        if feed is None:
            filt = subjects.any_project_aggregate_filter("run", run_id, self.store.prefix)
            feed = self.feeds[run_id] = Feed(self.store, filt, self.ping_s, self.memory)
            feed.start()
        feed.clients += 1
        self.idle.pop(run_id, None)
        if feed._linger is not None:
            feed._linger.cancel()
            feed._linger = None
        return feed

    def release(self, run_id: str) -> None:
        feed = self.feeds.get(run_id)
        if feed is None:
            return
        feed.clients -= 1
        if feed.clients <= 0:
            loop = asyncio.get_running_loop()
            feed._linger = loop.call_later(LINGER_S, self._drop, run_id)
            self.idle[run_id] = None
            self._trim()

    def _trim(self) -> None:
        """Drop the longest idle feeds while more than ``IDLE_MOST`` wait, or they hold more
        than ``IDLE_BYTES`` (their sizes are summed here: at most ``IDLE_MOST`` + 1 of them)."""
        held = sum(self.feeds[run_id].size for run_id in self.idle)
        while self.idle and (len(self.idle) > IDLE_MOST or held > IDLE_BYTES):
            run_id, _ = self.idle.popitem(last=False)
            held -= self.feeds[run_id].size
            self._drop(run_id)

    def _drop(self, run_id: str) -> None:
        feed = self.feeds.get(run_id)
        if feed is not None and feed.clients <= 0:
            if feed._linger is not None:
                feed._linger.cancel()
            feed.close()
            del self.feeds[run_id]
            self.idle.pop(run_id, None)

    def close(self) -> None:
        for feed in self.feeds.values():
            with contextlib.suppress(Exception):
                feed.close()
        self.feeds.clear()
        self.idle.clear()
