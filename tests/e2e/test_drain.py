"""A runner asked to stop (SIGTERM: a deploy, a node drain) takes no new work, lets its runs finish
within its drain time, and hands the rest back: another runner retries them, an infrastructure
event — never a cancel."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from crewyard.testing.api import deploy, sse_events, wait_run, write_crew
from crewyard.testing.platform import PlatformProcess

GATED = """
import os, pathlib, time

def run(inputs):
    gate = pathlib.Path(inputs["gate"])
    while not gate.exists():
        time.sleep(0.05)
    return {"pid": os.getpid()}
"""
DRAIN_S = 20  # generous: the first run must finish within it on a loaded machine


def _runner(data_dir: Path, platform: PlatformProcess, runner_id: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CREWYARD_NATS_CREDS": str(platform.creds("runner")),
        "CREWYARD_RUNNER_ID": runner_id,
        "CREWYARD_RUNNER_CONCURRENCY": "2",
        "CREWYARD_RUNNER_DRAIN": str(DRAIN_S),
        "CREWYARD_HEALTH_PORT": "0",
        "CREWYARD_RETRY_BACKOFF": "0",
    }
    code = (
        "import asyncio, sys; from crewyard import platform, settings;"
        "asyncio.run(platform.run_service('runner', settings.load(sys.argv[1], nats_url=sys.argv[2],"
        " backend='process')))"
    )
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-c", code, str(data_dir), platform.nats_url],
            env=env,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )


def _until(condition, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _status(api: httpx.Client, run_id: str) -> str:
    return str(api.get(f"/v1/runs/{run_id}").json()["status"])


def test_a_stopping_runner_finishes_what_it_can_and_hands_the_rest_to_another(tmp_path: Path) -> None:
    platform = PlatformProcess(
        tmp_path / "web", env={"CREWYARD_SERVICES": "builder,projector,gateway"}
    ).start()
    first = second = None
    try:
        first_log = tmp_path / "first.log"
        first = _runner(tmp_path / "first", platform, "first-runner", first_log)
        with platform.client(timeout=30) as api:
            dep = deploy(api, write_crew(tmp_path / "gated", GATED), "drain")
            gates = [tmp_path / "gate-finishes", tmp_path / "gate-handed-back"]
            run_ids = [
                api.post(
                    "/v1/runs", json={"deployment_id": dep["deployment_id"], "input": {"gate": str(gate)}}
                ).json()["run_id"]
                for gate in gates
            ]
            _until(lambda: all(_status(api, r) == "running" for r in run_ids), "both runs to start")

            first.send_signal(signal.SIGTERM)
            _until(lambda: b"stopping: waiting up to" in first_log.read_bytes(), "the runner to drain")
            gates[0].touch()  # this one ends within the drain time, on the stopping runner
            assert wait_run(api, run_ids[0], timeout=120)["status"] == "succeeded"

            second = _runner(tmp_path / "second", platform, "second-runner", tmp_path / "second.log")
            assert first.wait(timeout=DRAIN_S + 60) == 0  # drained, handed back, exited cleanly
            _until(lambda: _status(api, run_ids[1]) == "running", "the handed-back run to start again")
            gates[1].touch()
            handed_back = wait_run(api, run_ids[1], timeout=120)
            assert handed_back["status"] == "succeeded", handed_back

            finished = sse_events(api, f"/v1/runs/{run_ids[0]}/events")
            assert [m["event"] for m in finished if m["event"].startswith("run.")] == [
                "run.queued",
                "run.started",
                "run.completed",
            ]
            events = sse_events(api, f"/v1/runs/{run_ids[1]}/events")
            lifecycle = [m for m in events if m["event"].startswith("run.")]
            assert [m["event"] for m in lifecycle] == [
                "run.queued",
                "run.started",
                "run.retrying",
                "run.started",
                "run.completed",
            ]
            runners = [m["data"]["data"]["runner_id"] for m in lifecycle if m["event"] == "run.started"]
            assert runners == ["first-runner", "second-runner"]
            retry = next(m["data"]["data"] for m in lifecycle if m["event"] == "run.retrying")
            assert retry["reason"] == "runner_stopped"
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(DRAIN_S + 60)
        platform.stop()
