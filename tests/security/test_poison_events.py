"""Poison published straight into the stream (as anyone with publish rights could) is set aside
by every reader: runs still complete, SSE still streams, the read model moves on, and a rebuild
gives the same read model as the live projector."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from crewyard.core.events import decode
from crewyard.core.ids import new_id
from crewyard.eventstore import EventStore, StreamSettings
from crewyard.projector import rebuild
from crewyard.readmodel import TABLES
from crewyard.testing.api import EXAMPLES, deploy, sse_events, wait_run
from crewyard.testing.platform import PlatformProcess
from crewyard.testing.poison import poison

PROJECT = "victim"
SETTINGS = StreamSettings()


@pytest.fixture(scope="module")
def hello(platform: PlatformProcess) -> dict[str, Any]:
    with platform.client(timeout=30) as api:
        return deploy(api, EXAMPLES / "hello", PROJECT)


def _publish(platform: PlatformProcess, items: list[tuple[str, bytes]]) -> None:
    async def main() -> None:
        nc = await nats.connect(platform.nats_url, user_credentials=str(platform.creds()))
        try:
            js = nc.jetstream()
            for subject, data in items:
                await js.publish(subject, data, stream=SETTINGS.name)
        finally:
            await nc.drain()

    asyncio.run(main())


def _wait_for(condition: Any, what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not reached within {timeout}s: {what}")


def _project_events_until(api: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    """The project's SSE from the start, until ``run_id`` ends."""
    out: list[dict[str, Any]] = []
    with api.stream("GET", f"/v1/projects/{PROJECT}/events", params={"after": 0}) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if line.startswith("data:"):
                out.append(json.loads(line[5:]))
                if out[-1]["aggregate_id"] == run_id and out[-1]["type"] == "run.completed":
                    return out
    raise AssertionError("project stream ended early")


def test_poison_in_the_stream_does_not_stop_the_platform(platform, api, hello):
    running = api.post("/v1/runs", json={"project": PROJECT, "input": {"delay": 1.0}}).json()["run_id"]
    _wait_for(lambda: api.get(f"/v1/runs/{running}").json()["status"] == "running", "run started")
    # Poison on the running run's own subjects: garbage run.queued for the runner's work queue, a
    # garbage cancel request, forged terminal events, unknown types and versions, huge numbers…
    _publish(platform, poison(SETTINGS.prefix, PROJECT, running, new_id("run")))

    first = wait_run(api, running)
    assert first["status"] == "succeeded", first  # not canceled, not "completed" by a forgery
    events = sse_events(api, f"/v1/runs/{running}/events")
    assert events[-1]["event"] == "run.completed"
    for e in events:  # every event a client gets is one our decoder takes
        decode(json.dumps(e["data"]).encode())

    second = api.post("/v1/runs", json={"project": PROJECT, "input": {"delay": 0}}).json()["run_id"]
    assert wait_run(api, second)["status"] == "succeeded"
    streamed = _project_events_until(api, second)
    assert {e["aggregate_id"] for e in streamed} >= {running, second}
    for e in streamed:
        decode(json.dumps(e).encode())
    assert api.get("/healthz").status_code == 200
    assert api.get(f"/v1/runs/{running}").json() == first

    live, rebuilt = _live_and_rebuilt(platform)
    assert live == rebuilt


def _dump(path: Path) -> dict[str, Any]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        out: dict[str, Any] = {
            t: sorted(db.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in TABLES
        }
        out["position"] = db.execute("SELECT seq FROM projector_position").fetchone()[0]
        return out
    finally:
        db.close()


def _with_store(platform: PlatformProcess, use: Callable[[EventStore], Awaitable[int]]) -> int:
    async def main() -> int:
        nc = await nats.connect(platform.nats_url, user_credentials=str(platform.creds()))
        try:
            return await use(EventStore(nc, SETTINGS))
        finally:
            await nc.drain()

    return asyncio.run(main())


def _live_and_rebuilt(platform: PlatformProcess) -> tuple[dict[str, Any], dict[str, Any]]:
    """The live read model once it holds the whole stream, and one rebuilt from the stream."""
    live_db = platform.data_dir / "readmodel.sqlite3"
    rebuilt_db = platform.data_dir.parent / f"{platform.data_dir.name}-rebuilt.sqlite3"
    for _ in range(5):  # an event landing in between moves one of them: try again
        last = _with_store(platform, lambda store: store.last_seq())
        _wait_for(lambda last=last: _dump(live_db)["position"] >= last, "live projector caught up")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{rebuilt_db}{suffix}").unlink(missing_ok=True)
        count = _with_store(platform, lambda store: rebuild(store, rebuilt_db))
        live, rebuilt = _dump(live_db), _dump(rebuilt_db)
        if live["position"] == rebuilt["position"] == last == count:
            return live, rebuilt
    raise AssertionError("the stream kept moving")
