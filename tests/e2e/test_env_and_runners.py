"""Environment variables stay secret; several runners share the work, each run executed once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import httpx
import nats

from crewyard.testing.api import deploy, sse_events, wait_run, write_crew
from crewyard.testing.platform import PlatformProcess

ECHO_ENV = """
import os

def run(inputs):
    secret = os.environ.get("API_TOKEN", "<missing>")
    print("token is " + secret)
    return {"has_token": secret != "<missing>", "mode": os.environ.get("MODE")}
"""


def test_env_values_are_encrypted_injected_and_redacted(
    api: httpx.Client, platform: PlatformProcess, tmp_path
):
    crew = write_crew(tmp_path / "envcrew", ECHO_ENV, extra_toml='[deployment.env]\nMODE = "default-mode"\n')
    dep = deploy(api, crew, "secrets")
    secret = "s3cr3t-value-do-not-leak"
    assert api.put("/v1/projects/secrets/env/API_TOKEN", json={"value": secret}).status_code == 200
    listed = api.get("/v1/projects/secrets/env").json()
    assert [e["key"] for e in listed["env"]] == ["API_TOKEN"]
    assert secret not in json.dumps(listed)

    run_id = api.post("/v1/runs", json={"deployment_id": dep["deployment_id"]}).json()["run_id"]
    run = wait_run(api, run_id)
    assert run["output"] == {"has_token": True, "mode": "default-mode"}
    logs = [
        m["data"]["data"]["message"]
        for m in sse_events(api, f"/v1/runs/{run_id}/events")
        if m["event"] == "log"
    ]
    assert "token is ***" in logs

    async def raw_stream() -> bytes:
        nc = await nats.connect(platform.nats_url, user_credentials=str(platform.creds()))
        js = nc.jetstream()
        stream = await js.find_stream_name_by_subject("crewyard.evt.>")
        last = (await js.stream_info(stream)).state.last_seq  # all of it, however slow the reading
        sub = await js.subscribe("crewyard.evt.>", ordered_consumer=True)
        blob, seq = b"", 0
        while seq < last:
            try:
                msg = await sub.next_msg(timeout=30)
            except nats.errors.TimeoutError:
                break  # the assertions below say what is missing
            blob, seq = blob + msg.data, msg.metadata.sequence.stream
        await nc.drain()
        return blob

    stored = asyncio.run(raw_stream())
    assert b"env.set" in stored and secret.encode() not in stored

    assert api.delete("/v1/projects/secrets/env/API_TOKEN").status_code == 200
    again = wait_run(api, api.post("/v1/runs", json={"deployment_id": dep["deployment_id"]}).json()["run_id"])
    assert again["output"]["has_token"] is False


SLEEPY = """
import os, time

def run(inputs):
    time.sleep(float(inputs.get("sleep", 0.3)))
    return {"runner_pid": os.getppid()}
"""


def test_two_runners_execute_each_run_exactly_once(tmp_path):
    platform = PlatformProcess(tmp_path / "data", env={"CREWYARD_RUNNER_CONCURRENCY": "2"}).start()
    extra = None
    try:
        env = {
            **os.environ,
            "CREWYARD_RUNNER_CONCURRENCY": "2",
            "CREWYARD_RUNNER_ID": "second-runner",
            "CREWYARD_NATS_CREDS": str(platform.creds("runner")),
        }
        extra = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import asyncio,sys; from crewyard import platform, settings;"
                "asyncio.run(platform.run_service('runner', settings.load(sys.argv[1], nats_url=sys.argv[2],"
                " backend='process')))",
                str(tmp_path / "runner2"),
                platform.nats_url,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        with platform.client(timeout=30) as api:
            dep = deploy(api, write_crew(tmp_path / "sleepy", SLEEPY), "shared")
            # Batches until both runners took part (the second one may still be starting: a
            # loaded machine takes seconds to import it), each run executed exactly once.
            runners: dict[str, int] = {}
            posted = 0
            deadline = time.monotonic() + 180
            while len(runners) < 2 or posted < 20:
                assert time.monotonic() < deadline, f"the second runner never took a run: {runners}"
                batch = [
                    api.post(
                        "/v1/runs", json={"deployment_id": dep["deployment_id"], "input": {"sleep": 0.3}}
                    ).json()["run_id"]
                    for _ in range(4)
                ]
                posted += len(batch)
                for run_id in batch:
                    assert wait_run(api, run_id, timeout=120)["status"] == "succeeded"
                    events = sse_events(api, f"/v1/runs/{run_id}/events")
                    types = [m["event"] for m in events]
                    assert types.count("run.started") == 1 and types.count("run.completed") == 1, types
                    started = next(m for m in events if m["event"] == "run.started")
                    runner = started["data"]["data"]["runner_id"]
                    runners[runner] = runners.get(runner, 0) + 1
            assert sum(runners.values()) == posted
    finally:
        if extra is not None:
            os.killpg(extra.pid, signal.SIGTERM)
            extra.wait(30)
        platform.stop()
