"""Keep-alives never end a stream: a run, a project or a build that stays quiet for many keep-alive
intervals keeps its followers, who then see every event once — also with
``cancel_on_disconnect=true``, which cancels only when the client really goes away.

The keep-alive interval is a setting (``CREWYARD_SSE_PING``), short here. Quiet periods are not
timed: a gated crew waits for a file that the test writes once the follower has counted enough
keep-alives, so "quiet for several intervals" is a condition, not a sleep.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from crewyard.packaging import pack
from crewyard.testing.api import deploy, sse_events, wait_run, write_crew
from crewyard.testing.platform import PlatformProcess

PING_S = 0.2
QUIET_PINGS = 4  # keep-alives a follower must see during the silence before it is ended
TERMINAL = {"run.completed", "run.failed", "run.canceled"}

GATED = """
import os, time
from crewyard_runtime import emit

def run(inputs):
    emit("tool.called", tool="before", input={})
    while not os.path.exists(inputs["gate"]):  # silent until the test opens the gate
        time.sleep(0.02)
    emit("tool.called", tool="after", input={})
    return {"done": True}
"""


def read_sse(resp: httpx.Response) -> Iterator[dict[str, Any] | None]:
    """The stream as it arrives: each message as {"id", "event", "data"}, None for a keep-alive."""
    msg: dict[str, Any] = {}
    for line in resp.iter_lines():
        if line.startswith(":"):
            yield None
        elif line.startswith("id:"):
            msg["id"] = int(line[3:].strip())
        elif line.startswith("event:"):
            msg["event"] = line[6:].strip()
        elif line.startswith("data:"):
            msg["data"] = json.loads(line[5:].strip())
        elif line == "" and "data" in msg:
            yield msg
            msg = {}


def _is_before(msg: dict[str, Any]) -> bool:
    return msg["event"] == "tool.called" and msg["data"]["data"].get("tool") == "before"


class Follower:
    """Follows an SSE URL to the run's terminal event; opens ``gate`` once it has counted
    ``QUIET_PINGS`` keep-alives after a message for which ``quiet_after`` holds."""

    def __init__(
        self, client: httpx.Client, url: str, gate: Path, quiet_after: Callable[[dict[str, Any]], bool]
    ) -> None:
        self.client, self.url, self.gate, self.quiet_after = client, url, gate, quiet_after
        self.messages: list[dict[str, Any]] = []
        self.quiet_pings = 0

    def follow(self) -> None:
        quiet = False
        with self.client.stream("GET", self.url) as resp:
            assert resp.status_code == 200, resp.read()
            for msg in read_sse(resp):
                if msg is None:
                    if quiet and not self.gate.exists():
                        self.quiet_pings += 1
                        if self.quiet_pings >= QUIET_PINGS:
                            self.gate.write_text("go")
                    continue
                self.messages.append(msg)
                quiet = quiet or self.quiet_after(msg)
                if msg["event"] in TERMINAL:
                    return


@pytest.fixture(scope="module")
def quiet_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformProcess]:
    p = PlatformProcess(tmp_path_factory.mktemp("keepalive"), env={"CREWYARD_SSE_PING": str(PING_S)})
    p.start()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def client(quiet_platform: PlatformProcess) -> Iterator[httpx.Client]:
    with quiet_platform.client(timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def gated(client: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    dep = deploy(client, write_crew(tmp_path_factory.mktemp("gated"), GATED), "quiet")
    assert dep["status"] == "ready", dep
    return dep


def _invoke(client: httpx.Client, gate: Path) -> str:
    r = client.post("/v1/runs", json={"project": "quiet", "input": {"gate": str(gate)}})
    assert r.status_code == 202, r.text
    return str(r.json()["run_id"])


def _assert_every_event_once(client: httpx.Client, run_id: str, seen: list[dict[str, Any]]) -> None:
    full = sse_events(client, f"/v1/runs/{run_id}/events")
    assert [m["id"] for m in seen] == [m["id"] for m in full]
    assert len({m["id"] for m in seen}) == len(seen)
    assert [m["data"]["data"].get("tool") for m in full if m["event"] == "tool.called"] == ["before", "after"]


@pytest.mark.parametrize("cancel_on_disconnect", [False, True])
def test_a_quiet_run_keeps_its_followers(
    client: httpx.Client, gated: dict[str, Any], tmp_path: Path, cancel_on_disconnect: bool
):
    gate = tmp_path / "gate"
    run_id = _invoke(client, gate)
    query = "?cancel_on_disconnect=true" if cancel_on_disconnect else ""
    follower = Follower(client, f"/v1/runs/{run_id}/events{query}", gate, _is_before)
    follower.follow()

    assert follower.quiet_pings >= QUIET_PINGS
    assert follower.messages[-1]["event"] == "run.completed"
    assert wait_run(client, run_id)["status"] == "succeeded"
    _assert_every_event_once(client, run_id, follower.messages)


def test_several_followers_of_one_quiet_run_all_stay(client: httpx.Client, gated: dict[str, Any], tmp_path):
    """One shared feed, many clients; one of them opens the gate."""
    gate = tmp_path / "gate"
    run_id = _invoke(client, gate)
    url = f"/v1/runs/{run_id}/events"
    others = [Follower(client, url, tmp_path / "never", lambda m: False) for _ in range(3)]
    threads = [threading.Thread(target=f.follow, daemon=True) for f in others]
    for t in threads:
        t.start()
    Follower(client, url, gate, _is_before).follow()
    for t in threads:
        t.join(60)
    assert wait_run(client, run_id)["status"] == "succeeded"
    for f in others:
        assert f.messages and f.messages[-1]["event"] == "run.completed"
        _assert_every_event_once(client, run_id, f.messages)


def test_a_quiet_project_stream_stays_open(client: httpx.Client, gated: dict[str, Any], tmp_path: Path):
    gate = tmp_path / "gate"
    run_id: str | None = None
    seen: list[dict[str, Any]] = []
    quiet_pings, quiet = 0, False
    with client.stream("GET", "/v1/projects/quiet/events") as resp:
        assert resp.status_code == 200
        for msg in read_sse(resp):
            if msg is None:
                if run_id is None:  # the stream starts "now": invoke once it is open
                    run_id = _invoke(client, gate)
                elif quiet and not gate.exists():
                    quiet_pings += 1
                    if quiet_pings >= QUIET_PINGS:
                        gate.write_text("go")
                continue
            if msg["data"].get("aggregate_id") != run_id:
                continue
            seen.append(msg)
            quiet = quiet or _is_before(msg)
            if msg["event"] in TERMINAL:
                break
    assert run_id is not None and quiet_pings >= QUIET_PINGS
    assert seen[-1]["event"] == "run.completed"
    _assert_every_event_once(client, run_id, seen)


def test_invoke_stream_cancel_on_disconnect_lets_a_quiet_crew_finish(
    client: httpx.Client, gated: dict[str, Any], quiet_platform: PlatformProcess, tmp_path: Path
):
    """The CLI's ``invoke --stream --cancel-on-disconnect``: a crew quiet for many keep-alive
    intervals is not canceled, and the command ends with the run's success."""
    gate = tmp_path / "gate"
    cli = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "crewyard.cli",
            "invoke",
            "--project",
            "quiet",
            "--input",
            json.dumps({"gate": str(gate)}),
            "--stream",
            "--cancel-on-disconnect",
        ],
        env={
            **os.environ,
            "CREWYARD_API": quiet_platform.api,
            "CREWYARD_API_KEY": quiet_platform.admin_key,
            "NO_COLOR": "1",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        run_id = None
        deadline = time.monotonic() + 60
        while run_id is None:  # the CLI's run: the one with this gate
            assert cli.poll() is None, cli.communicate()[0]
            assert time.monotonic() < deadline, "the CLI's run never started"
            runs = client.get(
                "/v1/runs", params={"project": "quiet", "status": "running", "full": "true"}
            ).json()["runs"]
            mine = [r for r in runs if r["input"].get("gate") == str(gate)]
            run_id = mine[0]["id"] if mine else None
            time.sleep(0.05)
        Follower(client, f"/v1/runs/{run_id}/events", gate, _is_before).follow()
        out, _ = cli.communicate(timeout=60)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
    assert cli.returncode == 0, out.decode(errors="replace")
    assert wait_run(client, run_id)["status"] == "succeeded"


def test_build_log_stays_open_while_the_build_waits(tmp_path: Path):
    """No builder at first: the build log is silent until one starts; it stays open meanwhile
    and ends with the build's outcome, every event once."""
    platform = PlatformProcess(
        tmp_path / "data", env={"CREWYARD_SSE_PING": str(PING_S), "CREWYARD_SERVICES": "gateway,projector"}
    )
    platform.start()
    builder = None
    try:
        with platform.client(timeout=30) as api:
            r = api.post(
                "/v1/projects/waiting/deployments",
                content=pack(write_crew(tmp_path / "crew", GATED)),
                headers={"Content-Type": "application/gzip"},
            )
            assert r.status_code == 202, r.text
            dep_id = r.json()["deployment_id"]
            seen: list[dict[str, Any]] = []
            pings = 0
            with api.stream("GET", f"/v1/deployments/{dep_id}/build-log") as resp:
                assert resp.status_code == 200
                for msg in read_sse(resp):
                    if msg is None:
                        pings += 1
                        if pings >= QUIET_PINGS and builder is None:
                            builder = _start_builder(platform, tmp_path / "builder")
                        continue
                    seen.append(msg)
                    if msg["event"] in ("deployment.ready", "deployment.failed"):
                        break
            assert builder is not None and pings >= QUIET_PINGS
            assert seen[-1]["event"] == "deployment.ready", seen[-1]
            replay = sse_events(api, f"/v1/deployments/{dep_id}/build-log")
            assert [m["id"] for m in seen] == [m["id"] for m in replay]
    finally:
        if builder is not None:
            builder.terminate()
            builder.wait(30)
        platform.stop()


def _start_builder(platform: PlatformProcess, data_dir: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "crewyard.cli",
            "service",
            "builder",
            "--nats",
            platform.nats_url,
            "--data-dir",
            str(data_dir),
        ],
        env={
            **os.environ,
            "CREWYARD_HEALTH_PORT": "0",
            "CREWYARD_NATS_CREDS": str(platform.creds("builder")),
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
