"""``python -m crewyard.bench``: measure the platform next to raw NATS and raw process starts.

Usage::

    python -m crewyard.bench                  # every figure, full size (a few minutes)
    python -m crewyard.bench --quick          # one small iteration of each: a smoke test
    python -m crewyard.bench --only append,api --out results.json
    python -m crewyard.bench --only peer --peer-env ~/.cache/crewyard-bench-peer   # keep the peer

Exit status: 0 when every selected figure was measured (whether or not it met its target),
1 when a figure could not be measured.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform as host
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from . import _report
from ._api import api_figures
from ._context import Bench
from ._idle import after_bench, idle_figure
from ._live import fanout_figure, live_figures
from ._runs import redeploy_figure, run_start_figures
from ._stats import Figure, failed
from ._store import append_figures, replay_figure
from ._versus import peer_figures
from ._warm import warm_figures

Measure = Callable[[Bench], Awaitable[list[Figure]]]

#: (number, name, what, measure), in the order they run: idle first, on a platform that has done
#: nothing yet; the store figures before the platform is loaded with runs.
FIGURES: list[tuple[str, str, str, Measure]] = [
    ("7", "idle", "idle memory of crewyard up", idle_figure),
    ("1", "append", "EventStore.append vs js.publish", append_figures),
    ("4", "replay", "projector rebuild vs ordered consumer", replay_figure),
    ("2", "live", "crew → SSE client vs raw consumer", live_figures),
    ("3", "fanout", "1,000 SSE clients on one run", fanout_figure),
    ("5", "runs", "invoke → run.started / completed per backend", run_start_figures),
    ("6", "api", "read API vs /healthz", api_figures),
    ("8", "redeploy", "unchanged redeploy", redeploy_figure),
    ("9", "warm", "real crews started warm vs cold; idle sandboxes' memory", warm_figures),
    ("10", "peer", "next to LangGraph's local API server on the same graph", peer_figures),
]


def _selection(only: str | None) -> list[tuple[str, str, str, Measure]]:
    if not only:
        return FIGURES
    wanted = {w.strip() for w in only.split(",") if w.strip()}
    known = {n for f in FIGURES for n in f[:2]}
    unknown = wanted - known
    if unknown:
        names = ", ".join(f"{num}/{name}" for num, name, *_ in FIGURES)
        raise SystemExit(f"unknown figure(s) {', '.join(sorted(unknown))}; choose from {names}")
    return [f for f in FIGURES if f[0] in wanted or f[1] in wanted]


async def _run(
    selection: list[tuple[str, str, str, Measure]], bench: Bench, console: Console
) -> tuple[list[Figure], dict[str, Any]]:
    meta: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if bench.quick else "full",
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "machine": host.machine(),
        "loadavg_before": list(os.getloadavg()),
    }
    t0 = time.perf_counter()
    figures: list[Figure] = []
    idle: Figure | None = None
    for number, name, what, measure in selection:
        console.print(f"[bold]figure {number}[/] {name}: {what} …")
        t = time.perf_counter()
        try:
            got = await measure(bench)
        except Exception as exc:
            console.print(f"[red]figure {number} ({name}) failed:[/]\n{traceback.format_exc()}")
            got = [failed(number, what, "", exc)]
        console.print(f"  done in {time.perf_counter() - t:.1f} s")
        figures += got
        if number == "7" and got and not got[0].error:
            idle = got[0]
    if idle is not None:
        await after_bench(bench, idle)
    meta["duration_s"] = round(time.perf_counter() - t0, 1)
    meta["loadavg_after"] = list(os.getloadavg())
    meta["notes"] = bench.notes
    return figures, meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crewyard.bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="one small iteration of every figure (smoke test)"
    )
    parser.add_argument(
        "--only",
        metavar="NAME,...",
        help="figures by number or name: " + ", ".join(f"{num}/{name}" for num, name, *_ in FIGURES),
    )
    parser.add_argument("--out", type=Path, default=Path("bench-results.json"), help="JSON results file")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (data dirs, logs)")
    parser.add_argument(
        "--peer-env",
        type=Path,
        metavar="DIR",
        help="virtualenv of figure 10's peer (LangGraph's server): used if it works, else installed "
        "there and kept (default: installed in the scratch folder and removed; --quick never installs)",
    )
    args = parser.parse_args(argv)
    selection = _selection(args.only)  # fails on a typo before anything starts
    console = Console(stderr=True)
    workdir = Path(tempfile.mkdtemp(prefix="crewyard-bench-"))
    bench = Bench(workdir, quick=args.quick, peer_env=args.peer_env)
    try:
        figures, meta = asyncio.run(_run(selection, bench, console))
    finally:
        bench.close()
        if args.keep:
            console.print(f"scratch folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    _report.write(args.out, figures, meta)
    # Piped output (make bench | tee, CI logs) would otherwise be squeezed to 80 columns.
    _report.show(figures, meta, Console() if sys.stdout.isatty() else Console(width=180))
    console.print(f"results written to {args.out}")
    return 1 if any(f.error for f in figures) else 0


if __name__ == "__main__":
    sys.exit(main())
