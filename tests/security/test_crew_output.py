"""A run's output arrives as the crew returned it, within limits: a secret equal to ``true`` is
redacted from log text but never from a result of ``True``; a 5 MB result is carried whole, a 7 MB
one fails the run naming the limit, and so does one the event store could not take; a crew
flooding its log is stopped at the run's event budget and the stream grows by a bounded amount.
The platforms (bwrap and docker, limits from ``conftest``) serve on."""

from __future__ import annotations

import asyncio
import hashlib
import time

import httpx
import pytest

from crewyard.eventstore import StreamSettings, connect
from crewyard.testing.api import deploy, sse_events, wait_run, write_crew
from crewyard.testing.platform import PlatformProcess

pytestmark = pytest.mark.timeout(600)

CREW = """
import hashlib
from crewyard_runtime import log

def run(inputs):
    kind = inputs["kind"]
    if kind == "true":
        print("the flag is true")
        return True
    if kind == "big":
        return "x" * inputs["size"]
    if kind == "expands":  # a result line the runner's own encoding makes almost 4 times larger
        import os
        from crewyard_runtime import _protocol
        _protocol._channel.write('{"t":"result","output":[' + ",".join(["1e15"] * inputs["n"]) + "]}\\n")
        _protocol._channel.flush()
        os._exit(0)
    if kind == "chatty":  # logs without end, a line every few milliseconds, until canceled
        import time
        i = 0
        while True:
            print(f"line {i}")
            i += 1
            time.sleep(0.003)
    if kind == "flood":
        line = "f" * 1000
        for i in range(inputs["lines"]):
            print(f"{i:06d} {line}")
        return "flooded"
    return "ok"
"""


def _stream_bytes(platform: PlatformProcess) -> int:
    async def main() -> int:
        nc = await connect(platform.nats_url, name="test-observer", creds=platform.creds())
        try:
            info = await nc.jetstream().stream_info(StreamSettings().name)
            return int(info.state.bytes)
        finally:
            await nc.drain()

    return asyncio.run(main())


@pytest.fixture(scope="module", params=["bwrap", "docker"])
def out_platform(request: pytest.FixtureRequest) -> PlatformProcess:
    platform: PlatformProcess = request.getfixturevalue(f"{request.param}_platform")
    return platform


@pytest.fixture(scope="module")
def output_crew(out_platform: PlatformProcess, tmp_path_factory: pytest.TempPathFactory) -> str:
    project = f"outputs-{out_platform.backend}"
    with out_platform.client(timeout=60) as api:
        assert api.put(f"/v1/projects/{project}/env/FEATURE_FLAG", json={"value": "true"}).status_code == 200
        dep = deploy(api, write_crew(tmp_path_factory.mktemp("outputs") / "crew", CREW), project, timeout=600)
        assert dep["status"] == "ready", dep
    return project


def _run(api: httpx.Client, project: str, **input: object) -> dict:
    run_id = api.post("/v1/runs", json={"project": project, "input": input}).json()["run_id"]
    return wait_run(api, run_id, timeout=300)


def _serves(api: httpx.Client, project: str) -> None:
    assert api.get("/healthz").status_code == 200
    assert _run(api, project, kind="ok")["output"] == "ok"


def test_a_result_of_true_survives_a_secret_equal_to_true(
    out_platform: PlatformProcess, output_crew: str
) -> None:
    with out_platform.client(timeout=60) as api:
        run = _run(api, output_crew, kind="true")
        assert run["status"] == "succeeded" and run["output"] is True, run
        events = sse_events(api, f"/v1/runs/{run['run_id']}/events")
        logs = [m["data"]["data"]["message"] for m in events if m["event"] == "log"]
        assert "the flag is ***" in logs, logs  # log text is still redacted
        _serves(api, output_crew)


def test_a_5_mb_result_is_carried_whole_and_a_7_mb_one_fails_naming_the_limit(
    out_platform: PlatformProcess, output_crew: str
) -> None:
    with out_platform.client(timeout=120) as api:
        big = _run(api, output_crew, kind="big", size=5_000_000)
        assert big["status"] == "succeeded", {k: v for k, v in big.items() if k != "output"}
        assert hashlib.sha256(big["output"].encode()).digest() == hashlib.sha256(b"x" * 5_000_000).digest()

        too_big = _run(api, output_crew, kind="big", size=7_000_000)
        assert too_big["status"] == "failed", too_big
        assert too_big["error_reason"] == "limit" or "limit" in too_big["error_message"], too_big
        assert str(6 * 1024 * 1024) in too_big["error_message"], too_big
        assert "CREWYARD_MAX_OUTPUT_BYTES" in too_big["error_message"], too_big
        _serves(api, output_crew)


def test_a_result_the_event_store_cannot_take_fails_the_run_once_naming_its_size(
    out_platform: PlatformProcess, output_crew: str
) -> None:
    with out_platform.client(timeout=120) as api:
        # 5.5 MB as the crew sent it (under the output limit), 21 MB as the run's event: more than
        # the broker takes in a message. Not a lost runner tried three times: a limit, once.
        run = _run(api, output_crew, kind="expands", n=1_100_000)
        assert (run["status"], run["error_reason"], run["attempt"]) == ("failed", "limit", 1), run
        assert "bytes, more than the" in run["error_message"], run
        _serves(api, output_crew)


def test_a_log_flood_is_stopped_at_the_event_budget(out_platform: PlatformProcess, output_crew: str) -> None:
    before = _stream_bytes(out_platform)
    with out_platform.client(timeout=60) as api:
        flood = _run(api, output_crew, kind="flood", lines=50_000)
        grown = _stream_bytes(out_platform) - before

        assert flood["status"] == "failed", flood
        assert "CREWYARD_RUN_MAX_EVENTS" in flood["error_message"], flood
        events = sse_events(api, f"/v1/runs/{flood['run_id']}/events")
        assert len(events) < 5_100, len(events)  # the budget (5,000) plus the run's own events
        # 50,000 lines of 1 KB used to grow the stream by 73 MB; now by about 5,000 of them.
        assert grown < 12 * 1024 * 1024, grown
        _serves(api, output_crew)


def test_a_run_that_never_stops_logging_can_be_canceled(
    out_platform: PlatformProcess, output_crew: str
) -> None:
    """Its events arrive all the time: a cancel must neither read them all nor be refused
    because one arrived while it decided (it used to be a 409 "the run kept changing")."""
    with out_platform.client(timeout=60) as api:
        run_id = api.post("/v1/runs", json={"project": output_crew, "input": {"kind": "chatty"}}).json()[
            "run_id"
        ]
        deadline = time.monotonic() + 120
        while not (run := api.get(f"/v1/runs/{run_id}").json())["started_at"]:
            assert time.monotonic() < deadline, run
            time.sleep(0.1)
        # Hundreds of lines in, and more coming: read until 150 are (at most 120 s).
        deadline = time.monotonic() + 120

        def logs_so_far(events: list[dict]) -> int:
            return sum(m["event"] == "log" for m in events)

        logged = logs_so_far(
            sse_events(
                api,
                f"/v1/runs/{run_id}/events",
                until=lambda events: logs_so_far(events) >= 150 or time.monotonic() > deadline,
            )
        )
        assert logged >= 150, logged
        r = api.post(f"/v1/runs/{run_id}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "canceling", r.text
        ended = wait_run(api, run_id, timeout=120)
        assert ended["status"] == "canceled", ended
        logs = [m for m in sse_events(api, f"/v1/runs/{run_id}/events") if m["event"] == "log"]
        assert len(logs) > 100, len(logs)
        _serves(api, output_crew)
