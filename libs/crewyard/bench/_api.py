"""Figure 6: read API throughput and p99 against a trivial endpoint of the same server.

``GET /healthz`` is the trivial endpoint: it answers from the process alone (no SQLite, no NATS),
so the ratio is the whole cost of a read — routing, one read-model query, serialisation. (Until
``/readyz`` existed, ``/healthz`` read the read model's position, one SQLite query, and ratios
measured then are higher for that reason.)
Keep-alive connections run closed loops (send, wait, send) for a fixed time per endpoint; the
endpoints take turns in a rotating order, round after round.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import httpx

from . import _http
from ._context import PROJECT, Bench, BenchError, invoke, wait_finished
from ._stats import Figure, figure, ms, percentile, ratio_at_least


async def _closed_loops(
    base_url: str, path: str, connections: int, seconds: float, headers: dict[str, str]
) -> tuple[float, list[float], int]:
    """requests/s over ``connections`` keep-alive connections for ``seconds``, every latency, and
    the size of the response body (the part of the cost that grows with the page)."""
    latencies: list[float] = []
    size = [0]
    warm = asyncio.Semaphore(0)
    go = asyncio.Event()
    window = {"end": 0.0}

    async def loop() -> None:
        async with _http.Connection(base_url, headers) as conn:
            _, first = await conn.get(path)  # warm: connection set up, row in the page cache
            size[0] = len(first)
            warm.release()
            await go.wait()
            while (t0 := time.perf_counter()) < window["end"]:
                status, body = await conn.get(path)
                if status != 200:
                    raise BenchError(f"GET {path}: HTTP {status}: {body[:200]!r}")
                latencies.append(time.perf_counter() - t0)

    tasks = [asyncio.create_task(loop()) for _ in range(connections)]
    try:
        for _ in range(connections):
            await asyncio.wait_for(warm.acquire(), 30)
    except TimeoutError:
        for t in tasks:
            if t.done():
                t.result()  # the connection's own error says more than the timeout
        raise
    start = time.perf_counter()
    window["end"] = start + seconds
    go.set()
    await asyncio.gather(*tasks)
    return len(latencies) / (time.perf_counter() - start), latencies, size[0]


async def _seed_runs(client: httpx.AsyncClient, want: int) -> str:
    """At least ``want`` finished runs in the read model (so a page of 50 is full); one run's id."""
    have = (await client.get("/v1/runs", params={"project": PROJECT, "limit": want})).json()["runs"]
    missing = want - len(have)
    if missing > 0:
        ids = await asyncio.gather(*(invoke(client, {}) for _ in range(missing)))
        await asyncio.gather(*(wait_finished(client, i) for i in ids))
    runs = (
        await client.get("/v1/runs", params={"project": PROJECT, "status": "succeeded", "limit": 1})
    ).json()
    return str(runs["runs"][0]["id"])


async def api_figures(bench: Bench) -> list[Figure]:
    platform = await bench.platform()
    await bench.deployed(platform)
    async with platform.async_client(timeout=120) as client:
        run_id = await _seed_runs(client, bench.n(50, 5))
    trivial, one, page = "/healthz", f"/v1/runs/{run_id}", "/v1/runs?limit=50"
    paths = [trivial, one, page]
    conns, seconds = bench.n(8, 4), bench.n(3.0, 0.5)
    rates: dict[str, list[float]] = {p: [] for p in paths}
    lats: dict[str, list[float]] = {p: [] for p in paths}
    sizes: dict[str, int] = {}
    for r in range(bench.n(3, 1)):
        for path in paths[r % 3 :] + paths[: r % 3]:
            rate, latency, sizes[path] = await _closed_loops(
                platform.api, path, conns, seconds, platform.headers
            )
            rates[path].append(rate)
            lats[path].extend(latency)
    base_rate, base_p99 = statistics.median(rates[trivial]), percentile(ms(lats[trivial]), 99)
    out = []
    for key, path, title in (("6a", one, "GET /v1/runs/{id}"), ("6b", page, "GET /v1/runs?limit=50")):
        p99 = percentile(ms(lats[path]), 99)
        out.append(
            figure(
                key,
                title,
                "req/s",
                rates[path],
                baseline=base_rate,
                baseline_label="GET /healthz (no query)",
                target=ratio_at_least(0.7),
                detail=(
                    f"p99 {p99:.1f} ms vs {base_p99:.1f} ms; {conns} keep-alive connections; "
                    f"{sizes[path]:,} B per response vs {sizes[trivial]:,} B"
                ),
                extra={
                    "p99_ms": p99,
                    "p50_ms": percentile(ms(lats[path]), 50),
                    "healthz_p99_ms": base_p99,
                    "healthz_rates": rates[trivial],
                    "requests": len(lats[path]),
                    "response_bytes": sizes[path],
                    "healthz_response_bytes": sizes[trivial],
                },
            )
        )
    return out
