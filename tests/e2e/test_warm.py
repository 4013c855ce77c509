"""Warm sandboxes on a whole platform: a run that takes one is as isolated and as current as a cold
run — a fresh PID namespace, an empty artifacts folder, nothing of a previous run, the values set
before its POST — cancel and timeout work as ever, and no idle sandbox outlives its runner."""

from __future__ import annotations

import contextlib
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from crewyard.testing.api import deploy, sse_events, wait_run, write_crew
from crewyard.testing.platform import PlatformProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

PROBE = """
import os, pathlib, time
IMPORTED = time.time()

def run(inputs):
    if inputs.get("sleep"):
        time.sleep(inputs["sleep"])
    here = pathlib.Path(".")
    seen = {
        "pid": os.getpid(),
        "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "artifacts": sorted(p.name for p in here.iterdir()),
        "tmp": sorted(os.listdir("/tmp")),
        "color": os.environ.get("COLOR"),
        "run_id": os.environ.get("CREWYARD_RUN_ID"),
        "imported": IMPORTED,
    }
    (here / "left-by-a-run.txt").write_text("a previous run was here")
    pathlib.Path("/tmp/left-by-a-run").write_text("a previous run was here")
    return seen
"""


def _until(condition: Callable[[], bool], what: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _idle_sandboxes(api: httpx.Client, deployment_id: str) -> int:
    """Ready warm sandboxes of one deployment version, as the platform's metrics say."""
    text = api.get("/metrics").text
    pattern = rf'^crewyard_warm_sandboxes\{{deployment="{deployment_id}",state="idle"\}} (\S+)$'
    match = re.search(pattern, text, re.MULTILINE)
    return int(float(match.group(1))) if match else 0


def _run(api: httpx.Client, project: str, **body: Any) -> tuple[dict[str, Any], bool]:
    """Run to the end; the run as the API shows it, and whether it started warm."""
    run_id = api.post("/v1/runs", json={"project": project, "input": {}, **body}).json()["run_id"]
    run = wait_run(api, run_id, timeout=180)
    started = [e for e in sse_events(api, f"/v1/runs/{run_id}/events") if e["event"] == "run.started"]
    return run, bool(started[-1]["data"]["data"].get("warm"))


def _sandbox_processes(data_dir: Path) -> list[int]:
    """Processes of this platform's sandboxes (their artifacts folders lie in its data dir)."""
    needle = f"CREWYARD_ARTIFACTS_DIR={data_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if any(v.startswith(needle) for v in (entry / "environ").read_bytes().split(b"\0")):
                    found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def bwrap_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformProcess]:
    p = PlatformProcess(tmp_path_factory.mktemp("warm-bwrap"), backend="bwrap", build_backend="venv").start()
    yield p
    p.stop()


def _isolation(platform: PlatformProcess, tmp: Path, project: str) -> None:
    with platform.client(timeout=60) as api:
        dep = deploy(api, write_crew(tmp / project, PROBE), project, timeout=600)
        assert dep["status"] == "ready", dep
        dep_id = dep["deployment_id"]
        first, warm = _run(api, project)
        assert first["status"] == "succeeded", first
        assert not warm  # nothing was warm before the deployment's first run

        _until(lambda: _idle_sandboxes(api, dep_id) >= 1, "a warm sandbox")
        posted = time.time()
        second, warm = _run(api, project)
        assert second["status"] == "succeeded", second
        assert warm, "the second run should have taken the warm sandbox"
        seen = second["output"]
        assert seen["imported"] < posted  # the crew was imported before the run was asked for
        assert seen["run_id"] == second["id"]
        assert set(seen["pids"]) <= {1, seen["pid"]}, seen  # a PID namespace of its own
        assert seen["artifacts"] == []  # an empty artifacts folder
        assert "left-by-a-run" not in seen["tmp"]  # nothing of the run before
        assert [a["name"] for a in api.get(f"/v1/runs/{second['id']}/artifacts").json()["artifacts"]] == [
            "left-by-a-run.txt"
        ]

        # A value set now is what the very next run sees, warm sandbox ready or not.
        _until(lambda: _idle_sandboxes(api, dep_id) >= 1, "the pool to refill")
        assert api.put(f"/v1/projects/{project}/env/COLOR", json={"value": "blue"}).status_code in (200, 201)
        third, _ = _run(api, project)
        assert third["output"]["color"] == "blue", third
        _until(lambda: _idle_sandboxes(api, dep_id) >= 1, "a sandbox with the new value")
        fourth, warm = _run(api, project)
        assert warm and fourth["output"]["color"] == "blue"
        assert api.delete(f"/v1/projects/{project}/env/COLOR").status_code in (200, 204)
        fifth, _ = _run(api, project)
        assert fifth["output"]["color"] is None


def test_a_warm_run_is_isolated_and_current_on_bwrap(bwrap_platform: PlatformProcess, tmp_path: Path) -> None:
    _isolation(bwrap_platform, tmp_path, "warm-probe")


def test_cancel_and_timeout_end_warm_runs_as_ever(bwrap_platform: PlatformProcess, tmp_path: Path) -> None:
    with bwrap_platform.client(timeout=60) as api:
        dep_id = deploy(api, write_crew(tmp_path / "warm-stop", PROBE), "warm-stop", timeout=600)[
            "deployment_id"
        ]
        _run(api, "warm-stop")
        _until(lambda: _idle_sandboxes(api, dep_id) >= 1, "a warm sandbox")
        timed, warm = _run(api, "warm-stop", input={"sleep": 60}, timeout_s=1)
        assert warm and timed["status"] == "failed" and "timed out" in timed["error_message"], timed

        _until(lambda: _idle_sandboxes(api, dep_id) >= 1, "the pool to refill")
        run_id = api.post("/v1/runs", json={"project": "warm-stop", "input": {"sleep": 60}}).json()["run_id"]
        _until(lambda: api.get(f"/v1/runs/{run_id}").json()["status"] == "running", "the run to start")
        assert api.post(f"/v1/runs/{run_id}/cancel").status_code == 200
        canceled = wait_run(api, run_id, timeout=120)
        assert canceled["status"] == "canceled", canceled


@pytest.mark.parametrize("how", ["killed", "stopped"])
def test_no_idle_sandbox_outlives_its_runner(tmp_path: Path, how: str) -> None:
    platform = PlatformProcess(
        tmp_path / "p", backend="bwrap", build_backend="venv", env={"CREWYARD_WARM": "2"}
    )
    platform.start()
    try:
        with platform.client(timeout=60) as api:
            dep_id = deploy(api, write_crew(tmp_path / "crew", PROBE), "outlive", timeout=600)[
                "deployment_id"
            ]
            _run(api, "outlive")
            _until(lambda: _idle_sandboxes(api, dep_id) >= 2, "two warm sandboxes")
        assert _sandbox_processes(platform.data_dir)
        if how == "killed":
            assert platform.proc is not None
            platform.proc.send_signal(signal.SIGKILL)  # the runner alone: its reaper must act
            platform.proc.wait()
        else:
            platform.stop()  # SIGTERM: drains, and stops its pools first
        _until(lambda: not _sandbox_processes(platform.data_dir), "the idle sandboxes to end", 60)
    finally:
        platform.kill()


def test_a_warm_run_is_isolated_and_current_on_docker(
    tmp_path_factory: pytest.TempPathFactory, docker_host: str, base_image: str
) -> None:
    env = {"CREWYARD_DOCKER_HOST": docker_host, "CREWYARD_BASE_IMAGE": base_image}
    root = tmp_path_factory.mktemp("warm-docker")
    platform = PlatformProcess(root, backend="docker", build_backend="docker", env=env).start()
    try:
        _isolation(platform, root, "warm-docker")
    finally:
        platform.stop()
