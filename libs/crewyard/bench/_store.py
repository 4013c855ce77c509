"""Figures 1 (append) and 4 (replay): the event store and the projector against raw nats-py.

Both run on the bench's own nats-server, so the platform under test stays idle and its stream
small. Every measurement of figure 1 writes into a stream of its own, declared with the
platform's own ``ensure_stream`` settings, and deletes it afterwards. Figure 4 writes into a
stream with the platform's exact name and subjects (``CREWYARD_EVENTS``, ``crewyard.evt.>``),
because ``rebuild`` reads that.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import SlowConsumerError
from nats.js.api import ConsumerConfig, DeliverPolicy

from crewyard.core import subjects
from crewyard.core.events import (
    Event,
    Log,
    ProjectCreated,
    RunCompleted,
    RunQueued,
    RunStarted,
    ToolResult,
    encode,
    make_event,
)
from crewyard.core.ids import new_id
from crewyard.eventstore import EventStore, StreamSettings, ensure_stream

from ._context import PROJECT, Bench, BenchError
from ._stats import Figure, figure, ratio_at_least, side_by_side

#: Events per aggregate in figure 1: each checked append expects the aggregate's last sequence.
PER_AGGREGATE = 100
#: Events per run in figure 4: queued, started, logs, completed (the projector writes for 3 of them).
PER_RUN = 100
_streams = itertools.count(1)
Writer = Callable[[EventStore, list[Event]], Awaitable[None]]


async def _fresh_stream(nc: Client) -> StreamSettings:
    i = next(_streams)
    settings = StreamSettings(name=f"BENCH_APPEND_{i}", prefix=f"bench{i}.evt")
    await ensure_stream(nc.jetstream(), settings)
    return settings


def _events(n: int) -> list[Event]:
    out: list[Event] = []
    run_id = ""
    for i in range(n):
        if i % PER_AGGREGATE == 0:
            run_id = new_id("run")
        payload = ToolResult(tool="bench", output={"i": i, "text": "x" * 64})
        out.append(make_event(payload, project=PROJECT, aggregate_id=run_id, event_id=new_id("evt")))
    return out


async def _timed_stream(nc: Client, n: int, body: Writer) -> float:
    """One measurement on a fresh stream; returns events/s. ``body(store, events)`` writes them."""
    settings = await _fresh_stream(nc)
    store = EventStore(nc, settings)
    events = _events(n)
    try:
        t0 = time.perf_counter()
        await body(store, events)
        return n / (time.perf_counter() - t0)
    finally:
        await nc.jetstream().delete_stream(settings.name)


async def _raw_publish(nc: Client, n: int) -> float:
    settings = await _fresh_stream(nc)
    store = EventStore(nc, settings)  # only to name subjects exactly as the platform does
    messages = [(store.subject_of(e), encode(e)) for e in _events(n)]
    js = nc.jetstream(timeout=5.0, publish_async_max_pending=4000)
    try:
        t0 = time.perf_counter()
        for subject, data in messages:
            await js.publish(subject, data, stream=settings.name)
        return n / (time.perf_counter() - t0)
    finally:
        await js.delete_stream(settings.name)


async def _raw_publish_async(nc: Client, n: int) -> float:
    settings = await _fresh_stream(nc)
    store = EventStore(nc, settings)
    messages = [(store.subject_of(e), encode(e)) for e in _events(n)]
    js = nc.jetstream(timeout=5.0, publish_async_max_pending=4000)
    try:
        t0 = time.perf_counter()
        for subject, data in messages:
            await js.publish_async(subject, data, stream=settings.name)
        await js.publish_async_completed()
        return n / (time.perf_counter() - t0)
    finally:
        await js.delete_stream(settings.name)


async def _checked(store: EventStore, events: list[Event]) -> None:
    last: dict[str, int] = {}
    for event in events:
        last[event.aggregate_id] = await store.append(event, expected_seq=last.get(event.aggregate_id, 0))


async def _pipelined(store: EventStore, events: list[Event]) -> None:
    for event in events:
        await store.append_nowait(event)
    await store.flush(timeout=120.0)


async def append_figures(bench: Bench) -> list[Figure]:
    nc = await nats.connect(await bench.nats_url(), user_credentials=bench.nats_creds)
    try:
        rounds = bench.n(3, 1)
        n_sync, n_async = bench.n(5_000, 300), bench.n(50_000, 3_000)
        checked, raw = await side_by_side(
            rounds, lambda: _timed_stream(nc, n_sync, _checked), lambda: _raw_publish(nc, n_sync)
        )
        piped, raw_async = await side_by_side(
            rounds, lambda: _timed_stream(nc, n_async, _pipelined), lambda: _raw_publish_async(nc, n_async)
        )
    finally:
        await nc.drain()
    return [
        figure(
            "1a",
            "append, checked (Msg-Id + expected seq)",
            "events/s",
            checked,
            baseline=statistics.median(raw),
            baseline_label="js.publish one at a time",
            detail=f"{n_sync:,} events x {rounds}, {PER_AGGREGATE} per aggregate",
        ),
        figure(
            "1b",
            "append_nowait pipelined + flush",
            "events/s",
            piped,
            baseline=statistics.median(raw_async),
            baseline_label="js.publish_async + completed",
            target=ratio_at_least(0.8),
            detail=f"{n_async:,} events x {rounds}",
        ),
    ]


# -- figure 4: replay ------------------------------------------------------------------------------


def _replay_bodies(total: int) -> list[tuple[str, bytes]]:
    """``total`` events as the platform writes them: mostly logs, and each run's lifecycle."""
    now = datetime.now(UTC)
    dep_id = new_id("dep")
    out: list[tuple[str, bytes]] = []

    def add(event: Event) -> None:
        subject = subjects.event_subject(event.project, event.aggregate, event.aggregate_id, event.type)
        out.append((subject, encode(event)))

    add(
        make_event(
            ProjectCreated(name=PROJECT), project=PROJECT, aggregate_id=PROJECT, event_id=new_id("evt")
        )
    )
    # Logs are the bulk; encoding a million envelopes would take longer than the replay itself, so
    # they are stamped from a template with a counter as their id (digits are valid id characters).
    template_id = "evt_" + "0" * 26
    ids = itertools.count(1)
    while len(out) < total:
        run_id = new_id("run")

        def run_event(payload: RunQueued | RunStarted | RunCompleted, rid: str = run_id) -> Event:
            return make_event(payload, project=PROJECT, aggregate_id=rid, event_id=new_id("evt"), time=now)

        add(run_event(RunQueued(deployment_id=dep_id, input={"topic": "replay"})))
        add(run_event(RunStarted(runner_id="bench", backend="process", isolated=False)))
        log = make_event(
            Log(
                message="a log line of an ordinary length, as crews print them " * 2,
                timestamp=now.isoformat(),
            ),
            project=PROJECT,
            aggregate_id=run_id,
            event_id=template_id,
            time=now,
        )
        log_subject = subjects.event_subject(PROJECT, "run", run_id, "log")
        template = encode(log)
        for _ in range(min(PER_RUN - 3, total - len(out) - 1)):
            out.append(
                (log_subject, template.replace(template_id.encode(), f"evt_{next(ids):026d}".encode()))
            )
        add(run_event(RunCompleted(output={"ok": True}, duration_ms=1)))
    return out[:total]


async def _write_replay_stream(nc: Client, total: int) -> float:
    settings = StreamSettings()  # the platform's own stream name and subjects
    await ensure_stream(nc.jetstream(), settings)
    bodies = _replay_bodies(total)
    js = nc.jetstream(timeout=10.0, publish_async_max_pending=4000)
    t0 = time.perf_counter()
    for subject, data in bodies:
        await js.publish_async(subject, data, stream=settings.name)
    await js.publish_async_completed()
    return total / (time.perf_counter() - t0)


async def _raw_replay(url: str, creds: str, total: int) -> float:
    conn = _Connection(url, creds)
    async with conn as nc:
        try:
            return await _count_replay(nc, total)
        except TimeoutError:
            raise BenchError(
                f"raw replay stalled; {conn.dropped:,} messages dropped as a slow consumer"
            ) from None


async def _count_replay(nc: Client, total: int) -> float:
    count = 0
    done = asyncio.Event()

    async def on_msg(msg: Msg) -> None:
        nonlocal count
        count += 1
        if count >= total:
            done.set()

    t0 = time.perf_counter()
    sub = await nc.jetstream().subscribe(
        subjects.all_events(),
        stream=StreamSettings().name,
        ordered_consumer=True,
        cb=on_msg,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    try:
        await asyncio.wait_for(done.wait(), 900)
        return total / (time.perf_counter() - t0)
    finally:
        await sub.unsubscribe()


class _Connection:
    """A connection of its own per replay, counting the messages nats-py drops as a slow consumer
    (it only reports them to ``error_cb``; a replay that lost some stalls instead of failing)."""

    def __init__(self, url: str, creds: str) -> None:
        self.url = url
        self.creds = creds
        self.dropped = 0

    async def _on_error(self, exc: Exception) -> None:
        if isinstance(exc, SlowConsumerError):
            self.dropped += 1

    async def __aenter__(self) -> Client:
        self.nc = await nats.connect(self.url, error_cb=self._on_error, user_credentials=self.creds)
        return self.nc

    async def __aexit__(self, *exc: object) -> None:
        await self.nc.close()


async def _rebuild(url: str, creds: str, db: Path, total: int) -> float:
    from crewyard.projector import rebuild  # the service package; imported late like the platform does

    await asyncio.to_thread(db.unlink, missing_ok=True)
    conn = _Connection(url, creds)
    async with conn as nc:
        t0 = time.perf_counter()
        try:
            count = await rebuild(EventStore(nc, StreamSettings()), db)
        except Exception as exc:
            raise BenchError(
                f"rebuild of {total:,} events failed after {time.perf_counter() - t0:.0f} s ({exc!r}); "
                f"its subscription dropped {conn.dropped:,} messages as a slow consumer"
            ) from exc
        elapsed = time.perf_counter() - t0
    if count != total:
        raise BenchError(f"rebuild replayed {count} events, expected {total}")
    return count / elapsed


async def replay_figure(bench: Bench) -> list[Figure]:
    total = bench.n(1_000_000, 10_000)
    url = await bench.nats_url()
    nc = await nats.connect(url, user_credentials=bench.nats_creds)
    try:
        write_rate = await _write_replay_stream(nc, total)
    finally:
        await nc.drain()
    db = bench.workdir / "replay.sqlite3"
    raw_seen: list[float] = []

    async def raw_replay() -> float:
        raw_seen.append(await _raw_replay(url, bench.nats_creds, total))
        return raw_seen[-1]

    try:
        ours, raw = await side_by_side(
            bench.n(2, 1), lambda: _rebuild(url, bench.nats_creds, db, total), raw_replay
        )
    except BenchError as exc:
        if not raw_seen:
            raise
        raise BenchError(
            f"{exc}; the raw replay of the same stream ran at {raw_seen[0]:,.0f} events/s"
        ) from exc
    return [
        figure(
            "4",
            "projector rebuild",
            "events/s",
            ours,
            baseline=statistics.median(raw),
            baseline_label="ordered consumer cb=, count only",
            target=ratio_at_least(0.5),
            detail=f"{total:,} events ({PER_RUN - 3} logs per run); written at {write_rate:,.0f}/s",
            extra={"events": total, "write_rate": write_rate, "raw_rates": raw},
        )
    ]
