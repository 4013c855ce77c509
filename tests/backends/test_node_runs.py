"""JavaScript crews on every backend: the same contract as Python crews (see test_backend_contract.py).

The Node runtime starts where the Python one would (process, bwrap with the machine's Node, the
crew's image with its base image's Node), works in the artifacts folder, stops on cancel
with the grace a crew is promised, and can be warmed up ahead of its run as Python crews are.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from backend_helpers import Runs

from crewyard import sandboxuid
from crewyard.runner import protocol
from crewyard.runner.backends import BwrapBackend, ExecutionBackend, ProcessBackend, RunSpec
from crewyard.runner.warm import WarmSandbox

pytestmark = pytest.mark.timeout(600)


def _node_runs(request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> Runs:
    source, _ = request.getfixturevalue("node_crew_source")
    runtime = request.getfixturevalue("runtime_dir")
    if kind == "docker":
        backend: ExecutionBackend = request.getfixturevalue("docker_backend")
        return Runs(backend, tmp_path, source, runtime, None, request.getfixturevalue("node_crew_image"))
    venv = request.getfixturevalue("node_crew_venv")
    backend = ProcessBackend() if kind == "process" else BwrapBackend()
    return Runs(backend, tmp_path, source, runtime, venv, None)


@pytest.fixture(params=["process", "bwrap", "docker"])
def node_runs(request: pytest.FixtureRequest, tmp_path: Path) -> Runs:
    return _node_runs(request, request.param, tmp_path)


@pytest.fixture(params=["bwrap", "docker"])
def isolated_node_runs(request: pytest.FixtureRequest, tmp_path: Path) -> Runs:
    return _node_runs(request, request.param, tmp_path)


def _spec(runs: Runs, export: str, **kwargs: Any) -> RunSpec:
    spec = runs.spec(f"./crew.ts:{export}", **kwargs)
    spec.framework = "langgraph-js"
    return spec


async def test_a_javascript_crew_writes_its_artifacts_in_its_working_directory(node_runs: Runs) -> None:
    out = await node_runs.execute(_spec(node_runs, "artifacts", input={"title": "JS"}))
    assert out.status.code == 0, (out.proto, out.stderr)
    assert out.proto[0] == {"t": "hello", "v": protocol.VERSION, "runtime": "node"}
    assert {"t": "log", "level": "info", "message": "wrote two files", "stream": "stdout"} in out.proto
    assert out.artifacts == {
        "from-cwd.txt": b"written relative to the working directory\n",
        "nested/report.md": b"# JS\n",
    }
    result = out.result
    assert int(result["node"].split(".")[0]) >= 20
    if node_runs.kind != "process":  # not the runner's user (a container's: the host's uid, no one's)
        assert result["uid"] == (sandboxuid.DEFAULT if node_runs.kind == "docker" else 1000)
    if node_runs.kind == "docker":
        assert result["cwd"] == "/app/artifacts"
    assert out.lingering == []


async def test_a_canceled_javascript_crew_gets_its_grace_then_stops(node_runs: Runs) -> None:
    out = await node_runs.execute(_spec(node_runs, "waits"), kill_when="waiting", grace_s=10)
    messages = [m.get("message") for m in out.proto if m["t"] == "log"]
    assert "got SIGTERM" in messages, (out.proto, out.stderr)
    assert out.status.code != 0 and out.lingering == []


async def test_a_javascript_crew_over_its_memory_limit_is_killed_and_told_apart(
    isolated_node_runs: Runs,
) -> None:
    runs = isolated_node_runs
    out = await runs.execute(_spec(runs, "hog"))  # TEST_LIMITS: 256 MiB
    assert out.status.oom_killed, (out.status, out.proto[-3:], out.stderr[-5:])
    assert out.lingering == []


async def test_a_javascript_crew_is_warmed_up_before_its_run_takes_it(node_runs: Runs) -> None:
    # A warm sandbox: prepare at start (the crew is imported with the environment's variables and
    # says ready), start only when a run takes it; the run id is the run's, not the sandbox's.
    spec = msgspec.structs.replace(_spec(node_runs, "seen", env={"CREW_COLOR": "teal"}), warm=True)
    sandbox = WarmSandbox(spec, await node_runs.backend.start(spec), "fingerprint")
    try:
        assert await sandbox.until_ready(120), sandbox.failure
        handle = sandbox.take("run_took_a_warm_sandbox", {"n": 7})
        proto = [json.loads(raw) async for stream, raw in handle.output() if stream == "proto"]
        status = await asyncio.wait_for(handle.wait(), 60)
    finally:
        await sandbox.remove()
    assert status.code == 0, proto
    assert [m["t"] for m in proto if m["t"] != "log"] == ["hello", "ready", "result"]
    assert proto[-1]["output"] == {
        "importedWith": "teal",
        "runId": "run_took_a_warm_sandbox",
        "input": {"n": 7},
    }
