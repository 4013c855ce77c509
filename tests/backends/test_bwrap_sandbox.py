"""bwrap backend specifics: the sandbox dies with its runner, and leaves no control group behind."""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from backend_helpers import run_processes

from crewyard.runner.backends import _cgroup
from crewyard.runner.backends.bwrap import BwrapBackend

if TYPE_CHECKING:
    from backend_helpers import Runs

pytestmark = pytest.mark.timeout(60)


def _group_dirs(runner_id: str) -> list[Path]:
    name = _cgroup.safe_name(runner_id)
    parents = [
        _cgroup.ROOT / _cgroup.PARENT,
        *(p / _cgroup.PARENT for p in _cgroup.ROOT.iterdir() if p.is_dir()),
    ]
    return [
        g for parent in parents if parent.is_dir() for g in parent.iterdir() if g.name.startswith(f"{name}@")
    ]


async def test_limits_come_from_a_control_group_that_is_removed_with_the_run(bwrap_runs: Runs) -> None:
    spec = bwrap_runs.spec("crew:sleeper", input={"marker": 1000.125}, runner_id="cg-test")
    handle = await BwrapBackend().start(spec)
    try:
        dirs = _group_dirs("cg-test")
        assert dirs, "no control group: this host should give sandboxes cgroup limits"
        pids = next(d for d in dirs if (d / "pids.max").exists())
        assert (pids / "pids.max").read_text().strip() == "64"
    finally:
        await handle.kill(1)
        await handle.remove()
    assert _group_dirs("cg-test") == []


async def test_the_sandbox_dies_with_its_runner(bwrap_runs: Runs, tmp_path: Path) -> None:
    """Why ``cleanup_orphans`` has nothing to end: ``--die-with-parent`` takes care of it."""
    spec = bwrap_runs.spec("crew:sleeper", input={"marker": 1000.0625}, runner_id="doomed-runner")
    script = tmp_path / "runner.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio, pickle, sys
            from crewyard.runner.backends import BwrapBackend

            async def main():
                spec = pickle.loads(sys.stdin.buffer.read())
                handle = await BwrapBackend().start(spec)
                async for stream, line in handle.output():
                    if b"sleeping" in line:
                        print("started", flush=True)
                await asyncio.sleep(1000)

            asyncio.run(main())
            """
        )
    )
    runner = subprocess.Popen(  # noqa: ASYNC220 - a plain child we SIGKILL; nothing to await
        [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True
    )
    assert runner.stdin and runner.stdout
    runner.stdin.write(pickle.dumps(spec))
    runner.stdin.close()
    try:
        line = await asyncio.wait_for(asyncio.to_thread(runner.stdout.readline), 30)
        assert line.strip() == b"started"
        assert run_processes(spec.run_id), "the sandboxed crew should be running"
        os.kill(runner.pid, signal.SIGKILL)  # the runner dies without cleaning anything up
        runner.wait()
        for _ in range(60):
            if not run_processes(spec.run_id):
                break
            await asyncio.sleep(0.05)
        assert run_processes(spec.run_id) == []
    finally:
        runner.kill()
        runner.wait()
        runner.stdout.close()
    # What is left is an empty control group folder; cleanup_orphans removes it and counts
    # no sandbox, because none was alive.
    assert await BwrapBackend().cleanup_orphans("doomed-runner") == 0
    assert _group_dirs("doomed-runner") == []
