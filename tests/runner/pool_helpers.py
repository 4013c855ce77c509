"""What the warm-pool tests share: a crew that reports what it saw, its run spec, pools on the
process backend (forked from a fork server, or started one by one), and waits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import crewyard_runtime
from crewyard.runner.backends import Limits, ProcessBackend, RunSpec
from crewyard.runner.backends._forkserver import ForkedHandle
from crewyard.runner.pools import PoolKey, Pools, Renewal
from crewyard.runner.warm import WarmSandbox
from crewyard.testing.processes import alive, run_processes

RUNTIME = Path(crewyard_runtime.__file__).resolve().parents[1]
KEY = PoolKey("dep_pools", "production")
CREW = """
import os, pathlib, time
IMPORTED = time.time()
if os.environ.get("FAIL_AT_IMPORT"):
    raise RuntimeError("cannot import: " + os.environ["FAIL_AT_IMPORT"])
time.sleep(float(os.environ.get("IMPORT_S", "0")))
def run(inputs):
    here = pathlib.Path(".")
    found = sorted(p.name for p in here.iterdir())
    (here / "mine.txt").write_text(inputs.get("write", ""))
    return {"pid": os.getpid(), "imported": IMPORTED, "color": os.environ.get("COLOR"),
            "run_id": os.environ.get("CREWYARD_RUN_ID"), "found": found, "input": inputs}
"""


def template(tmp_path: Path, env: dict[str, str] | None = None, memory: int = 256 << 20) -> RunSpec:
    source = tmp_path / "src"
    source.mkdir(exist_ok=True)
    (source / "crew.py").write_text(textwrap.dedent(CREW))
    return RunSpec(
        run_id="run_template",
        project="tests",
        deployment_id=KEY.deployment_id,
        runner_id="test-runner",
        framework="python",
        entrypoint="crew:run",
        input={},
        env=env or {},
        source_dir=source,
        runtime_dir=RUNTIME,
        venv_dir=Path(sys.prefix),
        work_dir=tmp_path / "template",
        artifacts_dir=tmp_path / "template" / "artifacts",
        limits=Limits(memory_bytes=memory),
    )


async def until(condition: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class OneByOne(ProcessBackend):
    """The process backend as a backend that cannot fork: every sandbox started on its own."""

    start_server = None  # type: ignore[assignment]


def sandbox_pids(sandbox: WarmSandbox) -> list[int]:
    """The sandbox's live processes: a forked one's keeper and run, else those of its run id."""
    if isinstance(sandbox.handle, ForkedHandle):
        return [p for p in (sandbox.handle.keeper, sandbox.handle.pid) if p is not None and alive(p)]
    return run_processes(sandbox.spec.run_id)


@contextlib.asynccontextmanager
async def pools_of(tmp_path: Path, forking: bool, **kwargs: Any) -> AsyncIterator[Pools]:
    kwargs.setdefault("budget", 8 << 30)
    kwargs.setdefault("idle_s", 600.0)
    pools = Pools(ProcessBackend() if forking else OneByOne(), work_dir=tmp_path / "work", **kwargs)
    keeper = asyncio.create_task(pools.maintain())
    try:
        yield pools
    finally:
        keeper.cancel()
        await pools.close()


async def run_on(sandbox: WarmSandbox, run_id: str, input: dict[str, Any]) -> list[dict[str, Any]]:
    """Take the sandbox for a run and read its protocol lines to the end."""
    handle = sandbox.take(run_id, input)
    lines = []
    try:
        async for stream, raw in handle.output():
            if stream == "proto":
                lines.append(json.loads(raw))
        await asyncio.wait_for(handle.wait(), 60)
    finally:
        await handle.remove()
    return lines


def offer(
    pools: Pools, spec: RunSpec, fingerprint: str, low: int = 1, high: int = 2, key: PoolKey = KEY
) -> None:
    pools.offer(Renewal(key, spec, fingerprint), project="tests", name="default", low=low, high=high)


def idle(pools: Pools, key: PoolKey = KEY) -> list[WarmSandbox]:
    pool = pools.pools.get(key)
    return list(pool.idle) if pool else []
