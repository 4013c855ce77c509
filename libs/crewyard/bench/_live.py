"""Figures 2 (live delivery) and 3 (fan-out): a crew emits, SSE clients and a raw consumer watch.

Every run has a raw nats-py ordered consumer on the run's subjects next to the SSE clients, so
the baseline sees exactly the events the clients see, at the same moment on the same machine;
what separates the two is the gateway. Latency is ``time.time()`` at receipt minus the emit time
the crew put in the event (one clock: everything runs on this machine). All clients attach and
receive ``run.queued`` before the crew is told to start, so no latency includes a catch-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
import uuid
from typing import Any

import httpx
import msgspec
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from crewyard.core import subjects
from crewyard.testing.platform import PlatformProcess

from . import _http
from ._context import PROJECT, TERMINAL, Bench, BenchError, invoke
from ._proc import cpu_seconds
from ._stats import Figure, below, figure, ms, percentile, ratio_at_least

CONNECT_AT_ONCE = 50  # concurrent connection attempts: stays well inside the listen backlog


class _Data(msgspec.Struct):
    output: Any = None


class _Envelope(msgspec.Struct):
    data: _Data


_decode = msgspec.json.Decoder(_Envelope).decode


class Receiver:
    """What one client saw: receipt time and latency of each tool.result, and the terminal event."""

    def __init__(self) -> None:
        self.received: list[float] = []
        self.latency: list[float] = []
        self.attached = asyncio.Event()
        self.finished = asyncio.Event()

    def on_event(self, received: float, event_type: bytes, data: bytes) -> None:
        self.attached.set()
        if event_type == b"tool.result":
            self.received.append(received)
            self.latency.append(received - float(_decode(data).data.output))
        elif event_type in TERMINAL:
            self.finished.set()

    async def on_msg(self, msg: Msg) -> None:
        received = time.time()
        self.on_event(received, subjects.parse_subject(msg.subject)[3].encode(), msg.data)

    def rate(self) -> float:
        if len(self.received) < 2:
            raise BenchError(f"only {len(self.received)} events arrived")
        return (len(self.received) - 1) / (self.received[-1] - self.received[0])


class LiveRun:
    """One run of the bench crew with ``clients`` SSE clients and one raw consumer attached."""

    def __init__(
        self, sse: list[Receiver], raw: Receiver, platform_cpu: float, bench_cpu: float, wall: float
    ) -> None:
        self.sse, self.raw = sse, raw
        self.platform_cpu, self.bench_cpu, self.wall = platform_cpu, bench_cpu, wall


async def _attached(rx: Receiver, task: asyncio.Task[int] | None, timeout: float) -> None:
    """Wait for a client's first event; a client whose connection failed raises its error."""
    waiter = asyncio.create_task(rx.attached.wait())
    pending = {waiter} if task is None else {waiter, task}
    done, _ = await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if task is not None and task in done and not rx.attached.is_set():
        task.result()
        raise BenchError("SSE stream ended before its first event")
    if waiter not in done:
        waiter.cancel()
        raise BenchError("a client got no event in time")


async def live_run(
    bench: Bench,
    platform: PlatformProcess,
    client: httpx.AsyncClient,
    nc: Client,
    *,
    events: int,
    interval: float,
    clients: int,
) -> LiveRun:
    go = bench.workdir / f"go-{uuid.uuid4().hex}"
    run_id = await invoke(client, {"n": events, "interval": interval, "go_file": str(go)})
    raw = Receiver()
    sub = await nc.jetstream().subscribe(
        subjects.aggregate_filter(PROJECT, "run", run_id),
        ordered_consumer=True,
        cb=raw.on_msg,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    sse = [Receiver() for _ in range(clients)]
    gate = asyncio.Semaphore(CONNECT_AT_ONCE)

    async def follow(rx: Receiver) -> int:
        async with gate:
            opened = asyncio.Event()
            stream = asyncio.create_task(
                _http.sse(platform.api, f"/v1/runs/{run_id}/events", rx.on_event, connected=opened.set)
            )
            # Hold the slot until the response started: that bounds the connections being set up.
            await asyncio.wait(
                {stream, asyncio.create_task(opened.wait())}, return_when=asyncio.FIRST_COMPLETED
            )
        return await stream

    tasks = [asyncio.create_task(follow(rx)) for rx in sse]
    try:
        await asyncio.gather(*(_attached(rx, t, 120) for rx, t in zip(sse, tasks, strict=True)))
        await _attached(raw, None, 60)
        pid = platform.proc.pid if platform.proc else 0
        cpu0, mine0, t0 = cpu_seconds(pid), time.process_time(), time.perf_counter()
        go.touch()
        await asyncio.wait_for(asyncio.gather(*tasks), 600)
        await asyncio.wait_for(raw.finished.wait(), 60)
        cpu1, mine1, t1 = cpu_seconds(pid), time.process_time(), time.perf_counter()
    finally:
        for t in tasks:
            t.cancel()
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        go.unlink(missing_ok=True)
    for rx in [raw, *sse]:
        if len(rx.received) != events:
            raise BenchError(f"a client saw {len(rx.received)} of {events} events")
    return LiveRun(sse, raw, cpu1 - cpu0, mine1 - mine0, t1 - t0)


async def live_figures(bench: Bench) -> list[Figure]:
    platform = await bench.platform()
    await bench.deployed(platform)
    nc = await nats.connect(platform.nats_url)
    try:
        async with httpx.AsyncClient(base_url=platform.api, timeout=60) as client:
            tight = [
                await live_run(
                    bench, platform, client, nc, events=bench.n(10_000, 500), interval=0, clients=1
                )
                for _ in range(bench.n(3, 1))
            ]
            paced_events = bench.n(3_000, 300)
            paced = await live_run(
                bench, platform, client, nc, events=paced_events, interval=0.001, clients=1
            )
    finally:
        await nc.drain()
    sse_rates = [r.sse[0].rate() for r in tight]
    raw_rates = [r.raw.rate() for r in tight]
    tight_lat = ms([x for r in tight for x in r.sse[0].latency])
    lat, raw_lat = ms(paced.sse[0].latency), ms(paced.raw.latency)
    return [
        figure(
            "2a",
            "live delivery to 1 SSE client",
            "events/s",
            sse_rates,
            baseline=statistics.median(raw_rates),
            baseline_label="ordered consumer on the run's subjects",
            target=ratio_at_least(0.5),
            detail=f"crew emits {len(tight[0].raw.received):,} events in a tight loop, × {len(tight)}",
            extra={
                "raw_rates": raw_rates,
                "tight_loop_latency_p50_ms": percentile(tight_lat, 50),
                "tight_loop_latency_p99_ms": percentile(tight_lat, 99),
            },
        ),
        figure(
            "2b",
            "live latency emit→SSE p99 at 1k events/s",
            "ms",
            lat,
            value=percentile(lat, 99),
            baseline=percentile(raw_lat, 99),
            baseline_label="emit→ordered consumer p99",
            target=below(50, "ms"),
            detail=f"p50 {percentile(lat, 50):.1f} ms (raw {percentile(raw_lat, 50):.1f} ms), {paced_events:,} events",
            extra={"p50_ms": percentile(lat, 50), "raw_p50_ms": percentile(raw_lat, 50)},
        ),
    ]


async def fanout_figure(bench: Bench) -> list[Figure]:
    platform = await bench.platform()
    await bench.deployed(platform)
    clients = bench.n(1_000, 20)
    events, interval = bench.n(100, 20), 0.05
    nc = await nats.connect(platform.nats_url)
    try:
        async with httpx.AsyncClient(base_url=platform.api, timeout=60) as client:
            # The same run without SSE clients: the platform's CPU for the runner and projector,
            # subtracted below so that what remains is the gateway's share.
            alone = await live_run(bench, platform, client, nc, events=events, interval=interval, clients=0)
            fan = await live_run(
                bench, platform, client, nc, events=events, interval=interval, clients=clients
            )
    finally:
        await nc.drain()
    lat = ms([x for rx in fan.sse for x in rx.latency])
    raw_lat = ms(fan.raw.latency)
    deliveries = len(lat)
    gateway_cpu = max(fan.platform_cpu - alone.platform_cpu, 0.0)
    return [
        figure(
            "3",
            f"fan-out latency p99, {clients:,} SSE clients",
            "ms",
            lat,
            value=percentile(lat, 99),
            baseline=percentile(raw_lat, 99),
            baseline_label="emit→ordered consumer p99, same run",
            target=below(100, "ms"),
            detail=(
                f"p50 {percentile(lat, 50):.1f} ms; {events} events at {1 / interval:g}/s; gateway CPU "
                f"{gateway_cpu:.2f} s = {gateway_cpu / deliveries * 1e6:.0f} µs/delivery, "
                f"bench CPU {fan.bench_cpu / fan.wall:.0%}"
            ),
            extra={
                "clients": clients,
                "events": events,
                "deliveries": deliveries,
                "p50_ms": percentile(lat, 50),
                "raw_p50_ms": percentile(raw_lat, 50),
                "platform_cpu_s": fan.platform_cpu,
                "platform_cpu_s_without_clients": alone.platform_cpu,
                "gateway_cpu_s": gateway_cpu,
                "gateway_cpu_us_per_delivery": gateway_cpu / deliveries * 1e6,
                "platform_cpu_share": fan.platform_cpu / fan.wall,
                "bench_cpu_share": fan.bench_cpu / fan.wall,
                "wall_s": fan.wall,
            },
        )
    ]
