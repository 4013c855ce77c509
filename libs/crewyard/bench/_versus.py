"""Figure 10: crewyard next to LangGraph's local API server, on the same one-node graph.

Per crewyard backend (process, and bwrap where usable), with the peer started once for the
figure and both sides measured in turns in the same run:

- one run, create → terminal: crewyard ``POST /v1/runs`` then its SSE stream until the terminal
  event (what ``crewyard invoke --stream`` waits for); the peer ``POST /runs/wait`` (stateless);
- throughput: a batch of runs with a fixed number in flight, the same client code, runs/s;
- CPU-seconds per run over that batch: user + system time of the server's whole process tree
  (crewyard: the platform, its nats-server, every sandbox; the peer: ``langgraph dev``), read
  from /proc every 0.1 s so that sandboxes born and gone inside the batch count
  (:class:`~crewyard.bench._proc.TreeCpu`);
- a stream of 1,000 events emitted by the graph: time from the request to the first event of the
  stream, and to the last of the graph's events (crewyard: ``POST /v1/runs`` + its SSE; the peer:
  ``POST /runs/stream`` with ``stream_mode=custom``).

Both servers keep their defaults (crewyard: 4 runs at a time per runner, warm sandboxes; the
peer: its ``langgraph dev`` worker settings). ``--quick`` measures crewyard's side on the bench
crew only (no framework to build) and the peer only if ``--peer-env`` names an installed one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from crewyard.testing.platform import PlatformProcess

from . import _http
from ._context import PROJECT, Bench, BenchError, deploy, invoke
from ._peer import GRAPH_ID, Peer, PeerUnavailable, write_crew
from ._proc import TreeCpu
from ._stats import Figure, Target, figure, ms

CPU_SAMPLE_S = 0.1  # how often the servers' process trees are read during the throughput batch
#: Stream figure: (first event of any kind, first event of the graph, last event of the graph).
Stream = tuple[float, float, float]


def _not_above_peer() -> Target:
    return Target("≤ peer", lambda v, b: b is not None and v <= b)


def _below_peer() -> Target:
    return Target("< peer (ahead)", lambda v, b: b is not None and v < b)


def _peer_share(bound: float) -> Target:
    return Target(f"≥ {bound:g}x peer", lambda v, b: b is not None and b > 0 and v / b >= bound)


class CrewSide:
    """The graph (or, with ``--quick``, the bench crew) on one crewyard platform."""

    def __init__(self, platform: PlatformProcess, project: str, client: httpx.AsyncClient) -> None:
        self.platform, self.project, self.client = platform, project, client
        self.pid = platform.proc.pid if platform.proc else 0

    async def _follow(self, run_id: str, on_event: _http.OnEvent) -> None:
        last: list[bytes] = []

        def seen(received: float, kind: bytes, data: bytes) -> None:
            last[:] = [kind]
            on_event(received, kind, data)

        path = f"/v1/runs/{run_id}/events"
        await asyncio.wait_for(_http.sse(self.platform.api, path, seen, headers=self.platform.headers), 300)
        if last != [b"run.completed"]:
            why = (await self.client.get(f"/v1/runs/{run_id}")).json().get("error_message")
            raise BenchError(f"run {run_id} on crewyard ended with {last}: {why}")

    async def one_run(self) -> float:
        t0 = time.perf_counter()
        run_id = await invoke(self.client, {"n": 0}, self.project)
        await self._follow(run_id, lambda *_: None)
        return time.perf_counter() - t0

    async def stream(self, n: int) -> Stream:
        seen = _Arrivals(b"tool.result")
        t0 = time.perf_counter()
        run_id = await invoke(self.client, {"n": n}, self.project)
        await self._follow(run_id, seen.on_event)
        return seen.stream(t0, n, "crewyard's")


class PeerSide:
    """The graph on LangGraph's server: stateless runs (each gets a temporary thread)."""

    def __init__(self, peer: Peer, client: httpx.AsyncClient) -> None:
        self.url, self.client = peer.url, client
        self.pid = peer.proc.pid if peer.proc else 0

    async def one_run(self) -> float:
        t0 = time.perf_counter()
        body = {"assistant_id": GRAPH_ID, "input": {"n": 0}}
        r = await self.client.post(f"{self.url}/runs/wait", json=body)
        elapsed = time.perf_counter() - t0
        if r.status_code != 200 or r.json().get("emitted") != 0:
            raise BenchError(f"LangGraph's server: POST /runs/wait: HTTP {r.status_code}: {r.text[:300]}")
        return elapsed

    async def stream(self, n: int) -> Stream:
        seen = _Arrivals(b"custom")
        body = json.dumps({"assistant_id": GRAPH_ID, "input": {"n": n}, "stream_mode": ["custom"]}).encode()
        t0 = time.perf_counter()
        await asyncio.wait_for(_http.sse(self.url, "/runs/stream", seen.on_event, json_body=body), 300)
        return seen.stream(t0, n, "LangGraph's")


class _Arrivals:
    """When a stream's events arrived, and which of them were the graph's own (``kind``)."""

    def __init__(self, kind: bytes) -> None:
        self.kind = kind
        self.times: list[float] = []
        self.graph: list[float] = []

    def on_event(self, _received: float, kind: bytes, _data: bytes) -> None:
        now = time.perf_counter()
        self.times.append(now)
        if kind == self.kind:
            self.graph.append(now)

    def stream(self, t0: float, n: int, whose: str) -> Stream:
        """(first event, first graph event, last graph event), each since ``t0``."""
        if len(self.graph) != n:
            raise BenchError(f"{whose} stream had {len(self.graph)} of the graph's {n} events")
        return self.times[0] - t0, self.graph[0] - t0, self.graph[-1] - t0


async def _batch(
    one_run: Callable[[], Awaitable[float]], pid: int, total: int, in_flight: int
) -> tuple[float, float]:
    """(runs/s, CPU-seconds per run of the server's process tree) for ``total`` runs."""
    gate = asyncio.Semaphore(in_flight)
    meter = TreeCpu(pid)
    done = asyncio.Event()

    async def one() -> None:
        async with gate:
            await one_run()

    async def sampling() -> None:
        while not done.is_set():
            await asyncio.to_thread(meter.sample)  # a scan of /proc: off the event loop
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), CPU_SAMPLE_S)

    await asyncio.to_thread(meter.sample)
    sampler = asyncio.create_task(sampling())
    t0 = time.perf_counter()
    try:
        await asyncio.gather(*(one() for _ in range(total)))
        wall = time.perf_counter() - t0
    finally:
        done.set()
        await sampler
    await asyncio.to_thread(meter.sample)
    return total / wall, meter.seconds() / total


class _Samples:
    def __init__(self) -> None:
        self.latency: list[float] = []
        self.rate = 0.0
        self.cpu = 0.0
        self.streams: list[Stream] = []


async def _measure(bench: Bench, sides: list[Any]) -> list[_Samples]:
    """Every measurement in turns over ``sides`` (the order flips each round)."""
    out = [_Samples() for _ in sides]
    for side in sides:
        await side.one_run()  # warm-up: first use of the environment, page cache, a warm pool
    for i in range(bench.n(10, 2)):
        for k in range(len(sides)) if i % 2 == 0 else reversed(range(len(sides))):
            out[k].latency.append(await sides[k].one_run())
    total, in_flight = bench.n(100, 4), bench.n(16, 2)
    for k, side in enumerate(sides):
        out[k].rate, out[k].cpu = await _batch(side.one_run, side.pid, total, in_flight)
    events = bench.n(1000, 20)
    for i in range(bench.n(3, 1)):
        for k in range(len(sides)) if i % 2 == 0 else reversed(range(len(sides))):
            out[k].streams.append(await sides[k].stream(events))
    return out


def _figures(
    backend: str, ours: _Samples, theirs: _Samples | None, why: str, total: int, in_flight: int, events: int
) -> list[Figure]:
    def base(values: list[float]) -> float | None:
        return statistics.median(values) if values else None

    label = "LangGraph's local server (langgraph dev, in-memory), same graph, same run" if theirs else ""
    turns = "in turns with the peer" if theirs is not None else "crewyard alone"
    missing = f"; peer not measured: {why}" if theirs is None else ""
    short = "; peer not measured (see the note)" if theirs is None else ""

    def target(t: Target) -> Target | None:
        return t if theirs is not None else None

    first = [s[0] for s in ours.streams]
    last = [s[2] for s in ours.streams]
    their_first = [s[0] for s in theirs.streams] if theirs else []
    their_last = [s[2] for s in theirs.streams] if theirs else []
    graph_first = statistics.median(s[1] for s in ours.streams) * 1000
    peer_graph = f", peer {statistics.median(s[1] for s in theirs.streams) * 1000:.0f} ms" if theirs else ""
    return [
        figure(
            f"10a-{backend}",
            f"peer: one run, create → terminal ({backend})",
            "ms",
            ms(ours.latency),
            baseline=base(ms(theirs.latency) if theirs else []),
            baseline_label=label,
            target=target(_not_above_peer()),
            detail=f"median of {len(ours.latency)} sequential runs, {turns}{missing}",
            extra={"peer_ms": ms(theirs.latency) if theirs else None},
        ),
        figure(
            f"10b-{backend}",
            f"peer: {total} runs, {in_flight} in flight ({backend})",
            "runs/s",
            [ours.rate],
            baseline=theirs.rate if theirs else None,
            baseline_label=label,
            target=target(_peer_share(0.1)),
            detail=f"stretch 0.25x; each crewyard run in a {backend} sandbox of its own, the peer runs "
            f"graphs in its own process{short}",
        ),
        figure(
            f"10c-{backend}",
            f"peer: CPU per run, server + children ({backend})",
            "CPU-s",
            [ours.cpu],
            baseline=theirs.cpu if theirs else None,
            baseline_label=label,
            detail=f"over the throughput batch, /proc read every {CPU_SAMPLE_S:g} s; crewyard: platform, "
            f"nats-server and sandboxes{short}",
        ),
        figure(
            f"10d-{backend}",
            f"peer: {events}-event stream, first event ({backend})",
            "ms",
            ms(first),
            baseline=base(ms(their_first)),
            baseline_label=label,
            target=target(_below_peer()),
            detail=f"first event of any kind; first of the graph's own: {graph_first:.0f} ms"
            f"{peer_graph}{short}",
        ),
        figure(
            f"10e-{backend}",
            f"peer: {events}-event stream, last event ({backend})",
            "ms",
            ms(last),
            baseline=base(ms(their_last)),
            baseline_label=label,
            target=target(_below_peer()),
            detail=f"{len(last)} streams, {turns}{short}",
        ),
    ]


async def _on_platform(
    bench: Bench, platform: PlatformProcess, backend: str, peer: Peer | None, why: str
) -> list[Figure]:
    async with platform.async_client(timeout=600) as client, httpx.AsyncClient(timeout=600) as peer_client:
        if bench.quick:
            await bench.deployed(platform)
            project = PROJECT
        else:
            project = "peer"
            folder = write_crew(bench.workdir / "peer-crew", peer.langgraph_version if peer else None)
            await deploy(client, folder, project)
        sides: list[Any] = [CrewSide(platform, project, client)]
        if peer is not None:
            sides.append(PeerSide(peer, peer_client))
        got = await _measure(bench, sides)
    theirs = got[1] if peer is not None else None
    return _figures(backend, got[0], theirs, why, bench.n(100, 4), bench.n(16, 2), bench.n(1000, 20))


async def peer_figures(bench: Bench) -> list[Figure]:
    home = bench.workdir / "langgraph-peer"
    server = Peer(home, bench.peer_env or home / ".venv")
    peer: Peer | None = server
    why = ""
    try:
        await asyncio.to_thread(server.ensure, install=not bench.quick)
        if server.install_seconds is not None:
            bench.notes.append(f"figure 10: LangGraph's server installed in {server.install_seconds:.0f} s")
        await asyncio.to_thread(server.start)
    except PeerUnavailable as exc:
        why = str(exc)
        bench.notes.append(f"figure 10: crewyard measured alone — {why}")
        peer = None
    backends = ["process"]
    if not bench.quick:
        from ._runs import _usable_backends

        reason = (await _usable_backends(bench)).get("bwrap", "not reported by the runner's doctor")
        if reason is None:
            backends.append("bwrap")
        else:
            bench.notes.append(f"figure 10 on bwrap: skipped ({reason})")
    figures: list[Figure] = []
    try:
        for backend in backends:
            if backend == "process":
                figures += await _on_platform(bench, await bench.platform(), backend, peer, why)
                continue
            other = await bench.extra_platform("peer-bwrap", "bwrap", "venv")
            try:
                figures += await _on_platform(bench, other, backend, peer, why)
            except Exception as exc:
                where = ""  # whose connection: crewyard's gateway or the peer's server
                if isinstance(exc, httpx.RequestError):
                    with contextlib.suppress(RuntimeError):
                        where = f" on {exc.request.method} {exc.request.url}"
                bench.notes.append(f"figure 10 on {backend}: failed ({type(exc).__name__}{where}: {exc})")
            finally:
                await bench.stop_extra(other)
    finally:
        await asyncio.to_thread(server.stop)
    return figures
