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
import re
import statistics
import sys
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
from ._stats import Figure, below, fanout_target, figure, ms, percentile, ratio_at_least, ratio_at_most

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
        self.error: str | None = None  # the connection failed or the server ended it early

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
    """One run of the bench crew: the SSE clients that got every event, the raw consumer, the
    clients the gateway dropped (with the reasons its log gives), and CPU time while it ran."""

    def __init__(
        self,
        sse: list[Receiver],
        raw: Receiver,
        dropped: list[Receiver],
        reasons: list[str],
        cpu: tuple[float, float, float],
    ) -> None:
        self.sse, self.raw, self.dropped, self.reasons = sse, raw, dropped, reasons
        self.platform_cpu, self.bench_cpu, self.wall = cpu


async def _attached(rx: Receiver, task: asyncio.Task[Any] | None, timeout: float) -> None:
    """Wait for a client's first event, or for its connection to have failed (``rx.error``)."""
    waiter = asyncio.create_task(rx.attached.wait())
    pending = {waiter} if task is None else {waiter, task}
    done, _ = await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if waiter not in done:
        waiter.cancel()
        if task is None or task not in done:
            raise BenchError(f"a client got no event within {timeout:g} s")


def _log_reasons(platform: PlatformProcess) -> list[str]:
    """Why the platform ended streams early, as its log says (e.g. a JetStream limit)."""
    found = re.findall(r"description='([^']+)'|(StoreUnavailable: [^\n]{0,120})", platform.log_tail(3000))
    return sorted({a or b for a, b in found})


async def live_run(
    bench: Bench,
    platform: PlatformProcess,
    client: httpx.AsyncClient,
    nc: Client,
    *,
    events: int,
    interval: float,
    clients: int,
    floor: bool = False,
) -> LiveRun:
    """One run of the bench crew followed by ``clients`` SSE clients of the gateway or, with
    ``floor``, of the fan-out floor (:mod:`._floor`, whose CPU is then the one measured)."""
    go = bench.workdir / f"go-{uuid.uuid4().hex}"
    run_id = await invoke(client, {"n": events, "interval": interval, "go_file": str(go)})
    raw = Receiver()
    run_subjects = subjects.aggregate_filter(PROJECT, "run", run_id)
    sub = await nc.jetstream().subscribe(
        run_subjects,
        ordered_consumer=True,
        cb=raw.on_msg,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    api, headers, path = platform.api, platform.headers, f"/v1/runs/{run_id}/events"
    pid = platform.proc.pid if platform.proc else 0
    server: asyncio.subprocess.Process | None = None
    if floor:
        command = ["-m", "crewyard.bench._floor", platform.nats_url, str(platform.creds()), run_subjects]
        pipe = asyncio.subprocess.PIPE
        server = await asyncio.create_subprocess_exec(sys.executable, *command, stdin=pipe, stdout=pipe)
        assert server.stdout is not None
        try:
            port = int(await asyncio.wait_for(server.stdout.readline(), 60))
        except (TimeoutError, ValueError):  # it died or hangs before serving: never left running
            await _stop(server)
            await sub.unsubscribe()
            raise BenchError("the fan-out floor (bench/_floor.py) did not start") from None
        api, headers, path, pid = f"http://127.0.0.1:{port}", {}, "/", server.pid
    sse = [Receiver() for _ in range(clients)]
    gate = asyncio.Semaphore(CONNECT_AT_ONCE)

    async def follow(rx: Receiver) -> None:
        try:
            async with gate:
                opened = asyncio.Event()
                stream = asyncio.create_task(
                    _http.sse(api, path, rx.on_event, connected=opened.set, headers=headers)
                )
                # Hold the slot until the response started: that bounds connections being set up.
                started = asyncio.create_task(opened.wait())
                await asyncio.wait({stream, started}, return_when=asyncio.FIRST_COMPLETED)
                started.cancel()
            await stream
            if not rx.finished.is_set():
                rx.error = "the stream ended before the run's terminal event"
        except (OSError, EOFError, ValueError, _http.HttpError) as exc:
            rx.error = f"{type(exc).__name__}: {exc}"

    tasks = [asyncio.create_task(follow(rx)) for rx in sse]
    try:
        await asyncio.gather(*(_attached(rx, t, 120) for rx, t in zip(sse, tasks, strict=True)))
        await _attached(raw, None, 60)
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
        if server is not None:
            await _stop(server)
    dropped = [rx for rx in sse if rx.error]
    if dropped and len(dropped) == len(sse):
        raise BenchError(f"every SSE client was dropped: {dropped[0].error} {_log_reasons(platform)}")
    kept = [rx for rx in sse if not rx.error]
    for rx in [raw, *kept]:
        if len(rx.received) != events:
            raise BenchError(f"a client saw {len(rx.received)} of {events} events")
    reasons = _log_reasons(platform) if dropped else []
    return LiveRun(kept, raw, dropped, reasons, (cpu1 - cpu0, mine1 - mine0, t1 - t0))


async def _stop(server: asyncio.subprocess.Process) -> None:
    assert server.stdin is not None
    server.stdin.close()  # the floor serves until its stdin closes
    try:
        await asyncio.wait_for(server.wait(), 10)
    except TimeoutError:
        server.kill()
        await server.wait()


async def live_figures(bench: Bench) -> list[Figure]:
    platform = await bench.platform()
    await bench.deployed(platform)
    nc = await nats.connect(platform.nats_url, user_credentials=str(platform.creds()))
    try:
        async with platform.async_client(timeout=60) as client:
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
    p50 = percentile(lat, 50)
    return [
        figure(
            "2a",
            "live delivery to 1 SSE client",
            "events/s",
            sse_rates,
            baseline=statistics.median(raw_rates),
            baseline_label="ordered consumer on the run's subjects",
            target=ratio_at_least(0.5),
            detail=f"crew emits {len(tight[0].raw.received):,} events in a tight loop, x {len(tight)}",
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
            detail=f"p50 {p50:.1f} ms, raw {percentile(raw_lat, 50):.1f}; {paced_events:,} events",
            extra={"p50_ms": percentile(lat, 50), "raw_p50_ms": percentile(raw_lat, 50)},
        ),
    ]


async def fanout_figure(bench: Bench) -> list[Figure]:
    platform = await bench.platform()
    await bench.deployed(platform)
    clients = bench.n(1_000, 20)
    events, interval = bench.n(60, 20), 0.1
    nc = await nats.connect(platform.nats_url, user_credentials=str(platform.creds()))
    try:
        async with platform.async_client(timeout=60) as client:
            # The same run without SSE clients: the platform's CPU for the runner and projector,
            # subtracted below so that what remains is the gateway's share.
            alone = await live_run(bench, platform, client, nc, events=events, interval=interval, clients=0)
            fan = await live_run(
                bench, platform, client, nc, events=events, interval=interval, clients=clients
            )
            floor = await live_run(
                bench, platform, client, nc, events=events, interval=interval, clients=clients, floor=True
            )
    finally:
        await nc.drain()
    lat = ms([x for rx in fan.sse for x in rx.latency])
    floor_lat = ms([x for rx in floor.sse for x in rx.latency])
    floor_cpu = floor.platform_cpu / max(len(floor_lat), 1) * 1e6
    raw_lat = ms(fan.raw.latency)
    deliveries = len(lat)
    gateway_cpu = max(fan.platform_cpu - alone.platform_cpu, 0.0)
    gateway_us = gateway_cpu / max(deliveries, 1) * 1e6
    p99, floor_p99 = percentile(lat, 99), percentile(floor_lat, 99)
    dropped = ""
    if fan.dropped:
        why = "; ".join(fan.reasons) or fan.dropped[0].error
        dropped = f"; {len(fan.dropped)} of {clients:,} clients DROPPED ({why})"
    result = [
        figure(
            "3",
            f"fan-out latency p99, {clients:,} SSE clients",
            "ms",
            lat,
            value=p99,
            baseline=percentile(raw_lat, 99),
            baseline_label="emit→ordered consumer p99, same run",
            target=fanout_target(1.2, 100, "ms"),
            detail=(
                f"p50 {percentile(lat, 50):,.0f} ms; {events} events at {1 / interval:g}/s; gateway CPU "
                f"{gateway_cpu:.2f} s = {gateway_us:.0f} µs/delivery, "
                f"bench CPU {fan.bench_cpu / fan.wall:.0%}{dropped}; floor (one process writing every socket,"
                f" no HTTP framework: bench/_floor.py) p99 {floor_p99:,.0f} ms,"
                f" {floor_cpu:.0f} µs/delivery"
            ),
            extra={
                "clients": clients,
                "clients_dropped": len(fan.dropped),
                "drop_reasons": fan.reasons,
                "events": events,
                "deliveries": deliveries,
                "p50_ms": percentile(lat, 50),
                "raw_p50_ms": percentile(raw_lat, 50),
                "platform_cpu_s": fan.platform_cpu,
                "platform_cpu_s_without_clients": alone.platform_cpu,
                "gateway_cpu_s": gateway_cpu,
                "gateway_cpu_us_per_delivery": gateway_us,
                "platform_cpu_share": fan.platform_cpu / fan.wall,
                "bench_cpu_share": fan.bench_cpu / fan.wall,
                "wall_s": fan.wall,
                "floor_p99_ms": floor_p99,
                "floor_p50_ms": percentile(floor_lat, 50),
                "floor_raw_p99_ms": percentile(ms(floor.raw.latency), 99),
                "floor_cpu_us_per_delivery": floor_cpu,
                "floor_clients_dropped": len(floor.dropped),
            },
        )
    ]
    result.append(
        figure(
            "3b",
            f"fan-out latency p99, {clients:,} SSE clients, over a bare fan-out",
            "ms",
            lat,
            value=p99,
            baseline=floor_p99,
            baseline_label="the same clients on bench/_floor.py (one process, no HTTP framework), same run",
            target=ratio_at_most(1.2, "the bare fan-out"),
            detail=(
                f"what the gateway adds to one process writing every socket: CPU per delivery "
                f"{gateway_us:.0f} µs against {floor_cpu:.0f} µs ({gateway_us / max(floor_cpu, 1e-9):.2f}x)"
            ),
        )
    )
    if fan.dropped:
        for fig in result:  # the targets are for every client: dropping some is not meeting them
            fig.met = False
    return result
