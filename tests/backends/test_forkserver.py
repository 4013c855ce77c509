"""Runs forked from one fork server (``runner/backends/_forkserver.py``, the runtime's
``forkserver.py``): each a fresh process with its own folders and the server's current values,
seeing nothing of another run; a retired server lets its runs finish; a crew whose import leaves
a thread running is not forked. Each on the process backend and on bwrap, whose forked runs are
sandboxes of their own (``_bwrap_server``). The contract every backend keeps, and bwrap's
hostile crews, are checked through a fork too (the ``forked`` and ``bwrap-forked`` cases of
``test_backend_contract.py`` and ``test_hostile_crews.py``)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from backend_helpers import Runs, lingering_processes, make_runs, start_server

from crewyard.runner.backends import BackendError, RunSpec
from crewyard.runner.backends._forkserver import ForkedHandle, ForkServer
from crewyard.runner.warm import WarmSandbox
from crewyard.testing.processes import run_processes

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(params=["process", "bwrap"])
def process_runs(request: pytest.FixtureRequest, tmp_path: Path) -> Runs:
    return make_runs(request, request.param, tmp_path)


async def _server(runs: Runs, spec: RunSpec) -> tuple[WarmSandbox, ForkServer]:
    server = await start_server(runs.backend, spec)  # type: ignore[arg-type]
    assert isinstance(server.handle, ForkServer)
    return server, server.handle


async def until_running(handle: ForkedHandle, timeout: float = 60) -> None:
    """Until the keeper has said which process the run is."""
    deadline = asyncio.get_running_loop().time() + timeout
    while handle.pid is None:
        assert asyncio.get_running_loop().time() < deadline, "the run never started"
        await asyncio.sleep(0.05)


async def _run(fork: ForkServer, spec: RunSpec, *, keep: bool = False) -> dict[str, Any]:
    """Fork ``spec``'s run and read it to the end: its protocol messages, exit status, pids (and
    with ``keep`` its handle, not yet removed)."""
    handle = await fork.fork(spec)
    messages = [json.loads(line) async for stream, line in handle.output()]
    status = await handle.wait()
    pids = (handle.keeper, handle.pid)
    if not keep:
        await handle.remove()
    results = [m["output"] for m in messages if m.get("t") == "result"]
    assert status.code == 0 and len(results) == 1, messages
    assert [m["t"] for m in messages[:2]] == ["hello", "ready"]  # as a freshly started runtime
    return {"output": results[0], "pids": pids, "handle": handle}


async def test_runs_forked_from_one_server_share_nothing(process_runs: Runs) -> None:
    server, fork = await _server(process_runs, process_runs.spec("crew:scratch"))
    try:
        specs = [process_runs.spec("crew:scratch", input={"n": n}) for n in (1, 2)]
        first, second = await asyncio.gather(*(_run(fork, s, keep=True) for s in specs))
        for run, spec, n in ((first, specs[0], 1), (second, specs[1], 2)):
            # Each began with an empty artifacts folder and saw only its own files there (the
            # process backend's /tmp is the host's: its runs get a TMPDIR of their own instead).
            assert run["output"]["before"]["artifacts"] == []
            assert run["output"]["after"]["artifacts"] == [f"run-{n}.txt"]
            await run["handle"].collect_artifacts()
            assert sorted(p.name for p in spec.artifacts_dir.iterdir()) == [f"run-{n}.txt"]
            await run["handle"].remove()
            if process_runs.kind == "bwrap":  # a sandbox: its own /tmp, pid namespace and /proc
                assert [t for t in run["output"]["after"]["tmp"] if t.startswith("run-")] == [f"run-{n}.txt"]
                assert run["output"]["pid"] == 2 and run["output"]["procs"] == [1, 2]
        pids = {*first["pids"], *second["pids"]}
        assert len(pids) == 4 and None not in pids  # a keeper and a run process each, all distinct
        assert server.usable  # a server serves any number of runs
    finally:
        await server.remove()


async def test_what_the_import_left_in_tmp_is_each_runs_own_copy(bwrap_runs: Runs) -> None:
    """(bwrap: the process backend's /tmp is the host's, shared, as nothing is isolated there.)"""
    server, fork = await _server(bwrap_runs, bwrap_runs.spec("seeded:run"))
    try:
        specs = [bwrap_runs.spec("seeded:run", input={"n": n}) for n in (1, 2)]
        first, second = [(await _run(fork, spec))["output"] for spec in specs]
        for out, n in ((first, 1), (second, 2)):
            assert out["found"] == "imported"  # what the import wrote, not what a run added
            assert out["after"] == f"imported+run-{n}"
    finally:
        await server.remove()


async def test_a_forked_run_sees_the_servers_environment_and_its_own_ids(process_runs: Runs) -> None:
    server, fork = await _server(process_runs, process_runs.spec("crew:echo", env={"CREW_SETTING": "now"}))
    try:
        keys = ["CREW_SETTING", "CREWYARD_RUN_ID", "TMPDIR", "CREWYARD_ARTIFACTS_DIR"]
        echo = process_runs.spec("crew:echo", input={"env_keys": keys})
        sandboxed = process_runs.kind == "bwrap"  # the run's own /tmp and artifacts folder, inside
        assert (await _run(fork, echo))["output"]["env"] == {
            "CREW_SETTING": "now",
            "CREWYARD_RUN_ID": echo.run_id,
            "TMPDIR": "/tmp" if sandboxed else str(echo.work_dir),
            "CREWYARD_ARTIFACTS_DIR": "/artifacts" if sandboxed else str(echo.artifacts_dir),
        }
    finally:
        await server.remove()


async def test_a_retired_server_lets_its_runs_finish(process_runs: Runs) -> None:
    server, fork = await _server(process_runs, process_runs.spec("crew:scratch"))
    spec = process_runs.spec("crew:scratch", input={"n": 7, "pause": 2})
    handle = await fork.fork(spec)
    messages = []
    ready = asyncio.Event()

    async def read() -> None:
        async for stream, line in handle.output():
            if stream == "proto":
                messages.append(json.loads(line))
                if messages[-1]["t"] == "ready":
                    ready.set()

    reader = asyncio.create_task(read())
    await asyncio.wait_for(ready.wait(), 60)
    await server.remove()  # a change retired the pool while the run was going on
    status = await handle.wait()
    await reader
    await handle.remove()
    assert status.code == 0
    assert [m["output"]["after"]["artifacts"] for m in messages if m["t"] == "result"] == [["run-7.txt"]]
    with pytest.raises(BackendError, match="the fork server is gone"):
        await fork.fork(process_runs.spec("crew:scratch"))  # it takes no more


async def test_a_crew_whose_import_leaves_threads_is_not_forked(process_runs: Runs) -> None:
    server = await start_server(process_runs.backend, process_runs.spec("threaded:run"), ready=False)  # type: ignore[arg-type]
    try:
        assert not server.usable
        assert server.failure is not None and "threads running (poller)" in server.failure
    finally:
        await server.remove()


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] in "ZX"
    except (OSError, IndexError):
        return True


async def test_runs_die_with_their_server_when_it_is_killed(process_runs: Runs) -> None:
    server, fork = await _server(process_runs, process_runs.spec("crew:sleeper"))
    handle = await fork.fork(process_runs.spec("crew:sleeper", input={"marker": 4242.5}))
    await until_running(handle)
    run_pid = handle.pid
    assert run_pid is not None and not _gone(run_pid)
    await server.handle.kill(0)  # as when the runner dies: the server first, then its keepers
    status = await asyncio.wait_for(handle.wait(), 30)
    assert status.signal == 9
    for _ in range(200):
        if _gone(run_pid):
            break
        await asyncio.sleep(0.05)
    assert _gone(run_pid), "the run outlived its keeper"
    await handle.remove()
    await server.remove()


async def test_a_server_whose_import_never_ends_is_killed_when_removed(process_runs: Runs) -> None:
    # It never reads its socket again, so it would never see it closed: removed before it
    # forked anything, it is killed (it was left running, importing, for ever).
    spec = process_runs.spec("stuck:run")
    handle = await process_runs.backend.start_server(spec)  # type: ignore[attr-defined]
    assert isinstance(handle, ForkServer)
    deadline = asyncio.get_running_loop().time() + 30
    while not run_processes(spec.run_id):
        assert asyncio.get_running_loop().time() < deadline, "the server never started"
        await asyncio.sleep(0.05)
    await asyncio.wait_for(handle.remove(), 30)
    assert not await lingering_processes(spec.run_id)
