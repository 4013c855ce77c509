"""The whole loop on one machine: deploy → run → live events → artifacts, against ``crewyard up``."""

from __future__ import annotations

import asyncio
import json

import httpx
import nats

from crewyard.testing.api import EXAMPLES, deploy, sse_events, wait_run
from crewyard.testing.platform import PlatformProcess

TERMINAL = {"run.completed", "run.failed", "run.canceled"}


def test_deploy_invoke_stream_resume_and_download(api: httpx.Client, platform: PlatformProcess, tmp_path):
    dep = deploy(api, EXAMPLES / "hello", "hello")
    assert dep["status"] == "ready", dep
    assert dep["current"] is True

    r = api.post("/v1/runs", json={"project": "hello", "input": {"topic": "event sourcing", "delay": 0.4}})
    assert r.status_code == 202, r.text
    run_id = r.json()["run_id"]
    assert r.json()["status"] == "pending"

    # Read the first few events, drop the connection mid-run, resume with Last-Event-ID.
    first = sse_events(api, f"/v1/runs/{run_id}/events", stop_after=4)
    assert first[0]["event"] == "run.queued"
    rest = sse_events(api, f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": str(first[-1]["id"])})
    assert rest[0]["id"] > first[-1]["id"]
    assert rest[-1]["event"] == "run.completed"

    # Exactly the missing events: the two halves make the full history, no gap, no duplicate.
    full = sse_events(api, f"/v1/runs/{run_id}/events")
    assert [m["id"] for m in first + rest] == [m["id"] for m in full]
    assert [m["data"]["type"] for m in full] == [m["event"] for m in full]
    types = [m["event"] for m in full]
    for expected in (
        "run.started",
        "agent.started",
        "task.started",
        "tool.called",
        "tool.result",
        "task.completed",
        "agent.completed",
        "log",
        "artifact",
        "run.completed",
    ):
        assert expected in types, types
    assert types.index("artifact") < types.index("run.completed")
    logs = [m["data"]["data"]["message"] for m in full if m["event"] == "log"]
    assert any("Starting crew execution" in line for line in logs)

    # ?after= works like Last-Event-ID; resuming after the terminal event closes at once.
    assert sse_events(api, f"/v1/runs/{run_id}/events?after={full[-3]['id']}") == full[-2:]
    assert sse_events(api, f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": str(full[-1]["id"])}) == []

    run = wait_run(api, run_id)
    assert run["status"] == "succeeded"
    assert run["output"]["topic"] == "event sourcing"
    assert run["started_at"] and run["completed_at"] and run["duration_ms"] >= 0
    assert run["isolated"] is False and run["backend"] == "process"

    arts = api.get(f"/v1/runs/{run_id}/artifacts").json()["artifacts"]
    assert [a["name"] for a in arts] == ["report.md"]
    assert arts[0]["content_type"] == "text/markdown"
    body = api.get(f"/v1/runs/{run_id}/artifacts/report.md")
    assert body.status_code == 200
    assert body.headers["content-type"].startswith("text/markdown")
    assert body.content.startswith(b"# event sourcing")
    import hashlib

    assert hashlib.sha256(body.content).hexdigest() == arts[0]["sha256"]
    assert len(body.content) == arts[0]["size"]

    # A page of runs shows each run as GET /v1/runs/{id} does, without its bodies unless asked.
    listed = api.get("/v1/runs", params={"project": "hello", "status": "succeeded"}).json()["runs"]
    mine = next(x for x in listed if x["id"] == run_id)
    assert mine == {k: v for k, v in run.items() if k not in ("input", "output")}
    full_page = api.get("/v1/runs", params={"project": "hello", "status": "succeeded", "full": "true"})
    assert next(x for x in full_page.json()["runs"] if x["id"] == run_id) == run
    bad = api.get("/v1/runs", params={"project": "hello", "full": "maybe"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_request"
    # A version's runs, by either spelling of its id; a version that does not exist is a 404, as
    # are an odd id and a project name no project can have a 400.
    for version in (run["version_id"], run["deployment_id"]):
        of_it = api.get("/v1/runs", params={"deployment_id": version, "limit": 500}).json()["runs"]
        assert run_id in [x["id"] for x in of_it], version
        assert {x["deployment_id"] for x in of_it} == {run["deployment_id"]}
    for missing in ("dep_" + "0" * 26, "dep_x.>"):
        r = api.get("/v1/runs", params={"deployment_id": missing})
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text
    odd = api.get("/v1/runs", params={"project": "Not A Project"})
    assert odd.status_code == 400 and odd.json()["error"]["code"] == "invalid_project", odd.text


def test_external_nats_subscriber_sees_the_same_events(api: httpx.Client, platform: PlatformProcess):
    deploy(api, EXAMPLES / "hello", "watched")

    async def scenario() -> tuple[list[str], list[str]]:
        nc = await nats.connect(platform.nats_url, user_credentials=str(platform.creds()))
        seen: list[str] = []
        done = asyncio.Event()

        async def on_msg(msg) -> None:
            event = json.loads(msg.data)
            seen.append(event["id"])
            if event["type"] in TERMINAL:
                done.set()

        await nc.subscribe("crewyard.evt.watched.run.>", cb=on_msg)
        await nc.flush()
        async with platform.async_client(timeout=30) as client:
            r = await client.post("/v1/runs", json={"project": "watched", "input": {"delay": 0.05}})
            run_id = r.json()["run_id"]
            await asyncio.wait_for(done.wait(), 60)
        await nc.drain()
        sse = await asyncio.to_thread(sse_events, platform.client(timeout=30), f"/v1/runs/{run_id}/events")
        return seen, [m["data"]["id"] for m in sse]

    seen, via_sse = asyncio.run(scenario())
    assert seen == via_sse
    assert len(seen) > 5


def test_build_log_streams_until_ready(api: httpx.Client):
    from crewyard.packaging import pack

    r = api.post(
        "/v1/projects/buildlog/deployments",
        content=pack(EXAMPLES / "hello"),
        headers={"Content-Type": "application/gzip"},
    )
    dep_id = r.json()["deployment_id"]
    events = sse_events(api, f"/v1/deployments/{dep_id}/build-log")
    types = [m["event"] for m in events]
    assert types[0] == "deployment.created" and types[-1] == "deployment.ready"
    assert "deployment.build.log" in types
    assert any(
        "reusing" in m["data"]["data"].get("line", "") for m in events if m["event"] == "deployment.build.log"
    )


def test_resume_on_a_fresh_gateway_feed(api: httpx.Client, platform: PlatformProcess):
    """A client resuming before the gateway has read the run (its feed is new) gets only what follows."""
    deploy(api, EXAMPLES / "hello", "resume")
    run_id = api.post("/v1/runs", json={"project": "resume", "input": {"delay": 0}}).json()["run_id"]
    wait_run(api, run_id)
    full = sse_events(api, f"/v1/runs/{run_id}/events")
    for cut in (1, len(full) // 2, len(full) - 2):
        rest = sse_events(api, f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": str(full[cut]["id"])})
        assert [m["id"] for m in rest] == [m["id"] for m in full[cut + 1 :]]
