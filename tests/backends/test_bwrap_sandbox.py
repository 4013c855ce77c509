"""bwrap backend specifics: the sandbox dies with its runner, and leaves no control group behind."""

from __future__ import annotations

import asyncio
import os
import pickle
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from backend_helpers import run_processes

from crewyard import cgroups
from crewyard.runner.backends.bwrap import BwrapBackend
from crewyard.testing.processes import alive

if TYPE_CHECKING:
    from backend_helpers import Runs

pytestmark = pytest.mark.timeout(60)


def _group_dirs(runner_id: str) -> list[Path]:
    """Control group folders of one runner id (ours: ids are unique per test)."""
    return [
        d
        for group in cgroups.groups(lambda name: f"@{cgroups.safe_name(runner_id, 80)}@" in name).values()
        for d in group.dirs
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


RUNNER = """
import asyncio, pickle, sys
from crewyard.runner.backends import BwrapBackend

async def main():
    specs = pickle.loads(sys.stdin.buffer.read())
    backend = BwrapBackend()
    for spec in specs:  # one after another, so that a kill lands while bwrap is starting
        await backend.start(spec)
        print(spec.run_id, flush=True)
    await asyncio.sleep(1000)

asyncio.run(main())
"""


async def _wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


@pytest.mark.parametrize("trial", range(6))
async def test_no_sandbox_outlives_its_runner_however_it_is_killed(
    bwrap_runs: Runs, tmp_path: Path, trial: int
) -> None:
    """A runner SIGKILLed while it starts sandboxes: ``--die-with-parent`` misses the ones bwrap
    was just starting (they run on, reparented to pid 1); the reaper kills them and removes every
    control group of the dead runner within seconds."""
    runner_id = f"doomed-{uuid.uuid4().hex[:8]}"
    specs = [bwrap_runs.spec("crew:sleeper", runner_id=runner_id) for _ in range(8)]
    script = tmp_path / "runner.py"
    script.write_text(RUNNER)
    runner = subprocess.Popen(  # noqa: ASYNC220 - a plain child we SIGKILL; nothing to await
        [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True
    )
    assert runner.stdin and runner.stdout
    runner.stdin.write(pickle.dumps(specs))
    runner.stdin.close()
    try:
        started = 0
        while started < 1 + trial % 4:  # kill at a different start each trial, a moment after it
            assert await asyncio.wait_for(asyncio.to_thread(runner.stdout.readline), 30)
            started += 1
        await asyncio.sleep(random.uniform(0, 0.01))
        stacks = _children_named(runner.pid, "slirp4netns")  # the sandboxes' private networks
        os.kill(runner.pid, signal.SIGKILL)  # the runner dies without cleaning anything up
        runner.wait()
    finally:
        runner.kill()
        runner.wait()
        runner.stdout.close()

    def sandboxes() -> list[int]:
        return [pid for spec in specs for pid in run_processes(spec.run_id)]

    assert await _wait_until(lambda: not sandboxes() and not _group_dirs(runner_id), 10), (
        f"left behind: processes {sandboxes()}, groups {_group_dirs(runner_id)}"
    )
    assert stacks, "each started sandbox should have its network stack"
    assert await _wait_until(lambda: not [p for p in stacks if alive(p)], 10), "a network stack outlived"


def _children_named(parent: int, name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            comm, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
            if comm == name and int(rest[1]) == parent:
                found.append(int(entry.name))
    return found


def _group(owner: str, runner_id: str, run_id: str) -> cgroups.Cgroup:
    group = cgroups.create(
        cgroups.group_name(owner, runner_id, run_id), memory_bytes=None, pids=64, cpus=None
    )
    assert group is not None, "this host should give sandboxes control groups"
    return group


def test_a_starting_runner_sweeps_the_groups_of_runner_processes_that_are_gone() -> None:
    """What a reaper that was killed too leaves: the next runner to start removes it — and only
    it, not the group of a live process."""
    code = "from crewyard.cgroups import owner_tag; print(owner_tag())"
    gone = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, check=True, text=True
    ).stdout.strip()
    assert cgroups.owner_gone(gone) and not cgroups.owner_gone(cgroups.owner_tag())
    # A pid reused by another process is still a dead owner: the start time tells them apart.
    assert cgroups.owner_gone(cgroups.owner_tag().rsplit("-", 1)[0] + "-1")
    swept, kept = f"swept-{uuid.uuid4().hex[:8]}", f"kept-{uuid.uuid4().hex[:8]}"
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        for path in _group(gone, swept, "run_a").procs_files():
            with open(path, "w") as f:
                f.write(str(sleeper.pid))
        _group(gone, swept, "run_b")  # empty, as a killed runner leaves most of its groups
        live = _group(cgroups.owner_tag(), kept, "run_c")
        try:
            # Every runner and sandbox starting on this machine sweeps as well (another test
            # run's may get there first), so the effect on this test's groups is what is checked,
            # not how many this call found.
            asyncio.run(BwrapBackend().cleanup_orphans("another-runner"))
            assert sleeper.wait(10) == -signal.SIGKILL
            assert _group_dirs(swept) == []
            assert _group_dirs(kept) != []
        finally:
            live.remove()
    finally:
        sleeper.kill()
        sleeper.wait()
