"""A run's message delivered again while an execution of it is still getting ready (its set-up
took longer than ``ack_wait``, before ``run.started``): to another runner, the two executions race
for ``run.started`` and the loser gives back only what it took — the run keeps its concurrency
slot; to the same runner, the copy is kept alive and nothing else — the healthy attempt is never
declared lost. Each runner's first read of a run's environment waits for the test to let it go,
so every step happens in the order the test chooses."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from crewyard.eventstore import connect
from crewyard.testing.api import deploy, sse_events, wait_run, write_crew
from crewyard.testing.platform import PlatformProcess

CREW = """
import pathlib, time

def run(inputs):
    log = pathlib.Path(inputs["log"])
    with log.open("a") as f:
        f.write(inputs["tag"] + " start\\n")
    stop = pathlib.Path(inputs["stop"])
    while not stop.exists():
        time.sleep(0.05)
    with log.open("a") as f:
        f.write(inputs["tag"] + " end\\n")
    return {"done": True}
"""

# A real runner whose first read of a run's environment (after its slot is taken, before its
# lease claim and run.started) says so in <data>/entered and waits for <data>/go.
RUNNER = """
import asyncio, pathlib, sys
from crewyard import platform, settings
from crewyard.runner import specs

data = pathlib.Path(sys.argv[1])
original = specs.Specs.environment
first = [True]

async def environment(self, *args, **kwargs):
    if first[0]:
        first[0] = False
        (data / "entered").touch()
        while not (data / "go").exists():
            await asyncio.sleep(0.05)
    return await original(self, *args, **kwargs)

specs.Specs.environment = environment
config = settings.load(sys.argv[1], nats_url=sys.argv[2], backend="process")
asyncio.run(platform.run_service("runner", config))
"""

ENV = {
    "CREWYARD_RUNNER_ACK_WAIT": "2",  # a held-up set-up outlasts it: the message comes again
    "CREWYARD_WARM": "0",
    "CREWYARD_HEALTH_PORT": "0",
    "CREWYARD_RUNNER_DRAIN": "5",
}


class Gated:
    """A runner started with ``RUNNER``; its log is ``<data>.log``."""

    def __init__(self, data: Path, platform: PlatformProcess, runner_id: str, concurrency: int) -> None:
        self.data, self.log = data, data.parent / f"{data.name}.log"
        data.mkdir(parents=True)
        env = {
            **os.environ,
            **ENV,
            "CREWYARD_NATS_CREDS": str(platform.creds("runner")),
            "CREWYARD_RUNNER_ID": runner_id,
            "CREWYARD_RUNNER_CONCURRENCY": str(concurrency),
        }
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", RUNNER, str(data), platform.nats_url],
                env=env,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )

    @property
    def entered(self) -> bool:
        return (self.data / "entered").exists()

    def go(self) -> None:
        (self.data / "go").touch()

    def said(self, text: str) -> bool:
        return text in self.log.read_text(errors="replace")

    def stop(self) -> None:
        self.go()  # a set-up still held up would keep the runner draining
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)


def _until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def web(tmp_path: Path) -> Iterator[PlatformProcess]:
    """A platform without a runner of its own."""
    services = {"CREWYARD_SERVICES": "builder,projector,gateway"}
    platform = PlatformProcess(tmp_path / "web", env={**ENV, **services})
    platform.start()
    yield platform
    platform.stop()


def _post(api: httpx.Client, dep: dict[str, Any], tmp_path: Path, tag: str) -> str:
    body = {
        "deployment_id": dep["deployment_id"],
        "input": {"log": str(tmp_path / "order.txt"), "stop": str(tmp_path / f"stop_{tag}"), "tag": tag},
    }
    resp = api.post("/v1/runs", json=body)
    assert resp.status_code in (200, 201, 202), resp.text
    return str(resp.json()["run_id"])


def _lifecycle(api: httpx.Client, run_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (m["event"], m["data"]["data"])
        for m in sse_events(api, f"/v1/runs/{run_id}/events")
        if m["event"].startswith("run.")
    ]


def _holders(platform: PlatformProcess, deployment_id: str) -> list[str]:
    async def read() -> list[str]:
        nc = await connect(platform.nats_url, name="test", creds=str(platform.creds("admin")))
        try:
            kv = await nc.jetstream().key_value("CREWYARD_SLOTS")
            entry = await kv.get(f"dep.{deployment_id}")
            return list(json.loads(entry.value or b"{}").get("holders", []))
        finally:
            await nc.drain()

    return asyncio.run(read())


def test_the_execution_that_loses_the_start_keeps_the_winners_slot(
    tmp_path: Path, web: PlatformProcess
) -> None:
    runners = [Gated(tmp_path / f"r{i}", web, f"r{i}", concurrency=1) for i in (1, 2)]
    try:
        with web.client(timeout=30) as api:
            crew = write_crew(tmp_path / "crew", CREW, extra_toml="max_concurrent_runs = 1\n")
            dep = deploy(api, crew, "dup")
            first = _post(api, dep, tmp_path, "A")
            _until(lambda: any(r.entered for r in runners), "a runner to take run A")
            holder = next(r for r in runners if r.entered)
            other = next(r for r in runners if r is not holder)
            # The holder is busy (one slot each): A's message comes again to the other runner.
            _until(lambda: other.entered, "run A delivered again to the other runner")
            holder.go()
            _until(lambda: api.get(f"/v1/runs/{first}").json()["status"] == "running", "run A to start")
            other.go()  # it loses run.started, and finds run A held by its owner
            _until(lambda: other.said("its runner"), "the other runner to leave run A to its owner")
            assert _holders(web, dep["deployment_id"]) == [first]  # the loser kept A's slot for it

            second = _post(api, dep, tmp_path, "B")
            (tmp_path / "stop_B").touch()  # B ends at once once it runs: after A, in its slot
            (tmp_path / "stop_A").touch()
            assert wait_run(api, first, timeout=60)["status"] == "succeeded"
            assert wait_run(api, second, timeout=60)["status"] == "succeeded"
            order = (tmp_path / "order.txt").read_text().split("\n")
            assert order[:4] == ["A start", "A end", "B start", "B end"], order
            assert [t for t, _ in _lifecycle(api, first)] == ["run.queued", "run.started", "run.completed"]
    finally:
        for runner in runners:
            runner.stop()


def test_a_copy_delivered_to_the_same_runner_leaves_its_attempt_alone(
    tmp_path: Path, web: PlatformProcess
) -> None:
    runner = Gated(tmp_path / "r1", web, "r1", concurrency=2)  # it has room for the copy
    try:
        with web.client(timeout=30) as api:
            dep = deploy(api, write_crew(tmp_path / "crew", CREW), "dup")
            run_id = _post(api, dep, tmp_path, "A")
            _until(lambda: runner.entered, "the runner to take the run")
            _until(
                lambda: (
                    runner.said("delivered again")
                    or api.get(f"/v1/runs/{run_id}").json()["status"] == "running"
                ),
                "the run's message to come again",
            )
            runner.go()
            _until(lambda: (tmp_path / "order.txt").exists(), "the crew to start")
            (tmp_path / "stop_A").touch()
            run = wait_run(api, run_id, timeout=60)
            events = _lifecycle(api, run_id)
            assert [t for t, _ in events] == ["run.queued", "run.started", "run.completed"], events
            assert run["status"] == "succeeded"
    finally:
        runner.stop()
