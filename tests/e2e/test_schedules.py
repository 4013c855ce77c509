"""Schedules end to end: several schedulers at once, one killed in between, exactly one run per
planned time — on a clock running 30x faster (seconds per minute), and once on the real clock."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import datetime

import httpx
import pytest

from crewyard.core.events import ScheduleFired
from crewyard.eventstore import EventStore, connect
from crewyard.testing.api import EXAMPLES, deploy, wait_run
from crewyard.testing.platform import PlatformProcess
from crewyard.testing.services import ServiceProcess


@pytest.fixture(scope="module")
def cron_platform(tmp_path_factory: pytest.TempPathFactory):
    """Everything but the scheduler, which the tests run (and kill) themselves."""
    env = {"CREWYARD_SERVICES": "builder,runner,projector,gateway,notifier"}
    p = PlatformProcess(tmp_path_factory.mktemp("schedules"), env=env).start()
    with p.client(timeout=60) as client:
        assert deploy(client, EXAMPLES / "hello", "cron")["status"] == "ready"
    yield p
    p.stop()


def scheduler(p: PlatformProcess, clock: str = "") -> ServiceProcess:
    env = {"CREWYARD_SCHEDULER_CLOCK": clock} if clock else {}
    return ServiceProcess("scheduler", p.data_dir, p.nats_url, port=p.port, env=env).start()


def fired(p: PlatformProcess, schedule_id: str) -> list[ScheduleFired]:
    async def read() -> list[ScheduleFired]:
        nc = await connect(p.nats_url, name="test-fired", creds=p.creds())
        try:
            store = EventStore(nc)
            history = await store.load("cron", "schedule", schedule_id)
        finally:
            await nc.drain()
        return [r.event.data for r in history if isinstance(r.event.data, ScheduleFired)]

    return asyncio.run(read())


def wait_fired(p: PlatformProcess, schedule_id: str, count: int, timeout: float = 90) -> list[ScheduleFired]:
    deadline = time.monotonic() + timeout
    while True:
        got = fired(p, schedule_id)
        if len(got) >= count:
            return got
        assert time.monotonic() < deadline, f"only {len(got)} firings after {timeout}s"
        time.sleep(0.3)


def check_exactly_once(client: httpx.Client, events: list[ScheduleFired], period_s: int) -> None:
    planned = [e.planned_at for e in events]
    assert planned == sorted(set(planned)), planned  # never the same planned time twice
    gaps = {(b - a).total_seconds() for a, b in itertools.pairwise(planned)}
    assert gaps <= {float(period_s)}, planned  # and none left out
    assert all(e.outcome == "queued" and e.run_id for e in events), events
    run_ids = [e.run_id for e in events]
    assert len(set(run_ids)) == len(run_ids)
    listed = client.get("/v1/runs", params={"project": "cron", "limit": 500}).json()["runs"]
    by_schedule = [r for r in listed if r["id"] in set(run_ids)]
    assert len(by_schedule) == len(run_ids)  # one run per planned time, each really queued
    for run_id in run_ids:
        assert wait_run(client, str(run_id))["input"] == {"topic": "tick"}


def test_two_schedulers_one_killed_fire_each_planned_time_once(cron_platform: PlatformProcess):
    with cron_platform.client(timeout=60) as client:
        r = client.post(
            "/v1/projects/cron/schedules",
            json={"cron": "* * * * *", "input": {"topic": "tick"}, "overlap": "allow", "catch_up": "all"},
        )
        assert r.status_code == 201, r.text
        sch = r.json()
        origin = datetime.fromisoformat(sch["created_at"]).timestamp()
        clock = f"{origin}x30"  # a planned minute every two seconds
        a, b = scheduler(cron_platform, clock), scheduler(cron_platform, clock)
        try:
            wait_fired(cron_platform, sch["id"], 2)
            a.kill()  # SIGKILL: whatever it was doing is left half done
            n = len(fired(cron_platform, sch["id"]))
            wait_fired(cron_platform, sch["id"], n + 2)
            a = scheduler(cron_platform, clock)
            n = len(fired(cron_platform, sch["id"]))
            wait_fired(cron_platform, sch["id"], n + 2)
            client.post(f"/v1/projects/cron/schedules/{sch['id']}/pause")
        finally:
            a.kill()
            b.kill()
        events = fired(cron_platform, sch["id"])
        assert len(events) >= 6
        check_exactly_once(client, events, 60)
        shown = client.get(f"/v1/projects/cron/schedules/{sch['id']}").json()
        assert shown["fired"] == len(events) and shown["last_run_id"] == events[-1].run_id
        client.delete(f"/v1/projects/cron/schedules/{sch['id']}")


def test_one_real_minute_fires_once_with_two_schedulers(cron_platform: PlatformProcess):
    with cron_platform.client(timeout=60) as client:
        sch = client.post(
            "/v1/projects/cron/schedules", json={"cron": "* * * * *", "input": {"topic": "tick"}}
        ).json()
        planned = sch["next_fire_times"][0]
        a, b = scheduler(cron_platform), scheduler(cron_platform)
        try:
            (event,) = wait_fired(cron_platform, sch["id"], 1, timeout=90)
            time.sleep(2)  # a second firing of the same minute would have happened by now
        finally:
            a.kill()
            b.kill()
        assert event.planned_at.isoformat() == planned
        check_exactly_once(client, fired(cron_platform, sch["id"])[:1], 60)
        assert len(fired(cron_platform, sch["id"])) == 1
