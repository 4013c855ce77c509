"""Figure 9: warm starts — the same crew started cold and warm on one platform, side by side.

Full size: the CrewAI example (``examples/research-crew``) and the LangGraph example
(``examples/langgraph-agent``) against the fake LLM, on bwrap, and the CrewAI example on docker
when an engine answers (the fake LLM on a neighbouring network namespace the platform is allowed
to reach); else on the process backend with the fake LLM on loopback. ``--quick``: the bench
crew on the process platform (a smoke test of the figure, not a measurement of any framework).

A cold sample is made by changing a variable of the project just before the run: the run's
fingerprint no longer matches its pool's sandboxes, so it starts cold — as every run did before
warm sandboxes — while the pool prepares new ones. A warm sample waits until the pool has a ready
sandbox. Cold and warm alternate; each sample is classified by what its ``run.started`` says, not
by what was intended. Times are taken by a core NATS subscription to the project's run subjects
(the moment each event is stored): ``run.started`` → the first event of the crew itself (not a
log line), and invoke → ``run.completed``. The memory figure is what the runner's idle sandboxes
hold, measured from their control groups, next to the budget they must stay within.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
from nats.aio.msg import Msg

from crewyard.core import subjects
from crewyard.testing.api import EXAMPLES
from crewyard.testing.fakellm import FakeLLM
from crewyard.testing.platform import PlatformProcess

from ._context import Bench, BenchError, deploy, invoke
from ._stats import Figure, Target, below, figure, percentile

WARM_BUDGET = "2g"  # the platform default, named so the memory figure knows its bound
#: (name, example folder, input, target for run.started → first crew event when warm)
EXAMPLE_CREWS = [
    ("crewai", "research-crew", {"topic": "AI agents"}),
    ("langgraph", "langgraph-agent", {"topic": "AI agents"}),
]
TERMINAL = ("run.completed", "run.failed", "run.canceled")


def within_budget(budget_mb: float) -> Target:
    return Target(f"≤ {budget_mb:g} MB (budget)", lambda v, _b: v <= budget_mb)


class _Timeline:
    """When each event of each run of a project was stored, as seen by a core subscription."""

    def __init__(self) -> None:
        self.times: dict[str, list[tuple[str, float]]] = {}
        self.warm: dict[str, bool] = {}
        self.arrived = asyncio.Event()

    async def on_msg(self, msg: Msg) -> None:
        now = time.perf_counter()
        _, _, run_id, event_type = subjects.parse_subject(msg.subject)
        self.times.setdefault(run_id, []).append((event_type, now))
        if event_type == "run.started":
            with contextlib.suppress(ValueError, KeyError, TypeError):
                self.warm[run_id] = bool(json.loads(msg.data)["data"].get("warm"))
        self.arrived.set()

    async def until_over(self, run_id: str, timeout: float) -> list[tuple[str, float]]:
        deadline = time.monotonic() + timeout
        while not any(t in TERMINAL for t, _ in self.times.get(run_id, [])):
            self.arrived.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"run {run_id} did not end within {timeout:g} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), left)
        return self.times[run_id]


def _first(events: list[tuple[str, float]], kind: str) -> float | None:
    return next((t for e, t in events if e == kind), None)


def _first_crew_event(events: list[tuple[str, float]]) -> float | None:
    return next((t for e, t in events if not e.startswith("run.") and e != "log"), None)


async def _metric(client: httpx.AsyncClient, name: str, labels: str = "") -> float:
    text = (await client.get("/metrics")).raise_for_status().text
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def _set_env(client: httpx.AsyncClient, project: str, name: str, value: str) -> None:
    r = await client.put(f"/v1/projects/{project}/env/{name}", json={"value": value})
    if r.status_code not in (200, 201):
        raise BenchError(f"env set {name}: HTTP {r.status_code}: {r.text}")


async def _until(client: httpx.AsyncClient, name: str, labels: str, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while (value := await _metric(client, name, labels)) <= 0:
        if time.monotonic() > deadline:
            raise BenchError(f"{name}{labels} stayed 0 for {timeout:g} s")
        await asyncio.sleep(0.1)
    return value


async def _crew_figures(
    bench: Bench, platform: PlatformProcess, key: str, label: str, folder: Path, inputs: dict[str, Any],
    env: dict[str, str],
) -> list[Figure]:  # fmt: skip
    project = f"warm-{key}"
    timeline = _Timeline()
    nc = await nats.connect(platform.nats_url, user_credentials=str(platform.creds()))
    await nc.subscribe(f"{subjects.PREFIX}.{project}.run.*.>", cb=timeline.on_msg)
    await nc.flush()
    samples: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    try:
        async with platform.async_client(timeout=600) as client:
            for name, value in env.items():
                await _set_env(client, project, name, value)
            dep_id, _ = await deploy(client, folder, project)
            idle = f'{{deployment="{dep_id}",state="idle"}}'

            async def one(warm: bool, round_no: int) -> None:
                if warm:
                    await _until(client, "crewyard_warm_sandboxes", idle, 300)
                else:  # a value changed since the sandbox was prepared: this run starts cold
                    await _set_env(client, project, "BENCH_ROUND", str(round_no))
                t0 = time.perf_counter()
                run_id = await invoke(client, inputs, project)
                events = await timeline.until_over(run_id, 300)
                started, completed = _first(events, "run.started"), _first(events, "run.completed")
                first = _first_crew_event(events)
                if started is None or completed is None or first is None:
                    why = (await client.get(f"/v1/runs/{run_id}")).json().get("error_message")
                    raise BenchError(f"{label} run did not complete with crew events: {why}")
                samples[timeline.warm.get(run_id, False)].append((first - started, completed - t0))

            await one(False, 0)  # first use: page cache, the environment fetched
            samples[True].clear()
            samples[False].clear()
            for i in range(bench.n(10, 2)):
                await one(i % 2 == 1, i + 1)
                await one(i % 2 == 0, i + 1)
            # The pool refills after the last run; on a loaded machine importing CrewAI again takes
            # minutes (60 s lost a whole figure's samples at load 20), as long as a warm wait.
            held = await _until(client, "crewyard_warm_memory_bytes", "", 300)
    finally:
        await nc.drain()
    warm, cold = samples[True], samples[False]
    if not warm or not cold:
        raise BenchError(f"{label}: {len(warm)} warm and {len(cold)} cold runs; need both")
    first_warm, first_cold = [w[0] * 1000 for w in warm], [c[0] * 1000 for c in cold]
    total_warm, total_cold = [w[1] * 1000 for w in warm], [c[1] * 1000 for c in cold]
    where = f"{len(warm)} warm and {len(cold)} cold runs alternating"
    return [
        figure(
            f"9a-{key}",
            f"{label}: run.started → first crew event, warm",
            "ms",
            first_warm,
            baseline=statistics.median(first_cold),
            baseline_label="the same run started cold",
            # The targets: p50 ≤ 100 ms (p95 ≤ 250) on bwrap, ≤ 300 ms on docker.
            target=below(300, "ms") if key.endswith("-docker") else below(100, "ms"),
            detail=f"{where}; p95 {percentile(first_warm, 95):.0f} ms"
            + ("" if key.endswith("-docker") else " (target ≤ 250)"),
            extra={"cold_ms": first_cold, "p95_ms": percentile(first_warm, 95)},
        ),
        figure(
            f"9b-{key}",
            f"{label}: invoke → run.completed, warm",
            "ms",
            total_warm,
            baseline=statistics.median(total_cold),
            baseline_label="the same run started cold",
            target=Target("< cold", lambda v, b: b is not None and v < b),
            detail=where,
            extra={"cold_ms": total_cold},
        ),
        figure(
            f"9c-{key}",
            f"{label}: memory held by its idle warm sandboxes",
            "MB",
            [held / 2**20],
            target=within_budget(2048),
            detail=f"crewyard_warm_memory_bytes after the runs (budget CREWYARD_WARM_MEMORY={WARM_BUDGET})",
        ),
    ]


@contextlib.contextmanager
def _fake_llm(bwrap: bool) -> Iterator[tuple[FakeLLM, dict[str, str]]]:
    """The fake LLM where the crews can reach it, and the platform settings that allow that."""
    if not bwrap:
        with FakeLLM() as llm:
            yield llm, {}
        return
    from crewyard.testing.neighbour import Neighbour

    with Neighbour() as neighbour:
        llm = neighbour.run(lambda: FakeLLM(host=neighbour.address).start())
        try:
            yield llm, {"CREWYARD_NETWORK_ALLOW": neighbour.allow}
        finally:
            llm.stop()


async def warm_figures(bench: Bench) -> list[Figure]:
    if bench.quick:
        platform = await bench.platform()
        return await _crew_figures(bench, platform, "bench", "bench crew", bench.crew_dir, {"n": 1}, {})
    from ._runs import _usable_backends

    usable = await _usable_backends(bench)
    # The fake LLM's neighbouring network namespace needs root.
    backends = [b for b in ("bwrap", "docker") if usable.get(b) is None and os.geteuid() == 0]
    if not backends:
        bench.notes.append(
            "figure 9 on process: bwrap or docker, and root for the fake LLM's network, missing"
        )
    figures: list[Figure] = []
    with _fake_llm(bool(backends)) as (llm, platform_env):
        env = {"OPENAI_BASE_URL": llm.base_url, "OPENAI_API_KEY": "sk-fake-key-for-the-bench"}
        for backend in backends or ["process"]:
            build = "docker" if backend == "docker" else "venv"
            platform = await bench.extra_platform(f"warm-{backend}", backend, build, env=platform_env)
            # docker: the CrewAI example only (its image takes minutes to build), as the target names it.
            crews = EXAMPLE_CREWS[:1] if backend == "docker" else EXAMPLE_CREWS
            try:
                for key, example, inputs in crews:
                    name = f"{key}-docker" if backend == "docker" else key
                    label = f"{example} ({key}, {backend})"
                    figures += await _crew_figures(
                        bench, platform, name, label, EXAMPLES / example, inputs, env
                    )
            except Exception as exc:
                bench.notes.append(f"figure 9 on {backend}: failed ({type(exc).__name__}: {exc})")
                if backend != "docker":
                    raise
            finally:
                await bench.stop_extra(platform)
    return figures
