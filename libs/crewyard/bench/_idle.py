"""Figure 7: memory of ``crewyard up`` doing nothing, next to a bare broker and a bare interpreter.

Measured first, on a platform that has not served anything yet; the same sum is taken again
after the other figures (``after_bench``), which shows what stays resident after work. RSS is
summed over the whole process tree, nats-server included (shared pages counted once per
process, as the figure asks); PSS, which splits shared pages fairly, is reported next to it.
"""

from __future__ import annotations

import asyncio
import statistics
import sys

from crewyard.natsserver import EmbeddedNats

from ._context import Bench
from ._proc import tree_memory
from ._stats import Figure, below, figure

MB = 1024 * 1024


async def _samples(pid: int, count: int) -> tuple[list[float], list[float], list[str]]:
    rss: list[float] = []
    pss: list[float] = []
    names: list[str] = []
    for _ in range(count):
        r, p, names = await asyncio.to_thread(tree_memory, pid)
        rss.append(r / MB)
        pss.append(p / MB)
        await asyncio.sleep(0.5)
    return rss, pss, names


async def _baseline(bench: Bench, settle: float) -> tuple[float, float]:
    """RSS of a fresh idle nats-server with JetStream plus an idle bare Python interpreter."""
    broker = EmbeddedNats(bench.workdir / "idle-nats")
    await asyncio.to_thread(broker.start)
    python = await asyncio.create_subprocess_exec(sys.executable, "-c", "import time; time.sleep(120)")
    try:
        await asyncio.sleep(settle)
        assert broker.proc is not None
        nats_rss = (await asyncio.to_thread(tree_memory, broker.proc.pid))[0] / MB
        python_rss = (await asyncio.to_thread(tree_memory, python.pid))[0] / MB
        return nats_rss, python_rss
    finally:
        python.kill()
        await python.wait()
        await asyncio.to_thread(broker.stop)


async def idle_figure(bench: Bench) -> list[Figure]:
    platform = await bench.platform()
    assert platform.proc is not None
    settle = bench.n(3.0, 1.0)
    await asyncio.sleep(settle)  # let start-up garbage be collected and the consumers settle
    rss, pss, names = await _samples(platform.proc.pid, bench.n(6, 2))
    nats_rss, python_rss = await _baseline(bench, settle)
    return [
        figure(
            "7",
            "idle RSS of crewyard up (process tree)",
            "MB",
            rss,
            baseline=nats_rss + python_rss,
            baseline_label="idle nats-server + bare python",
            target=below(250, "MB"),
            detail=f"PSS {statistics.median(pss):.0f} MB; processes: {', '.join(sorted(set(names)))}",
            extra={
                "pss_mb": statistics.median(pss),
                "processes": names,
                "nats_server_mb": nats_rss,
                "bare_python_mb": python_rss,
            },
        )
    ]


async def after_bench(bench: Bench, idle: Figure) -> None:
    """Add the platform's resident memory after every other figure ran to the idle figure."""
    platform = bench.platform_started
    if platform is None or platform.proc is None or platform.proc.poll() is not None:
        return
    await asyncio.sleep(1.0)
    rss, pss, _ = await _samples(platform.proc.pid, 2)
    idle.extra["rss_mb_after_bench"] = statistics.median(rss)
    idle.extra["pss_mb_after_bench"] = statistics.median(pss)
    idle.detail += f"; after the bench: RSS {statistics.median(rss):.0f} MB"
