"""The scheduler's ticks against a real event store, on a clock the test moves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from crewyard import settings
from crewyard.core.events import RunQueued, ScheduleCreated, ScheduleDeleted, ScheduleFired, make_event
from crewyard.core.ids import new_id
from crewyard.core.versions import Resolved
from crewyard.eventstore import EventStore
from crewyard.scheduler import service

pytestmark = pytest.mark.timeout(60)


async def test_an_idle_schedule_is_looked_at_again_only_when_due_or_changed(
    store: EventStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every schedule's cron was walked on every tick (twice a second): 150 idle ones held the
    # platform's loop for seconds at a time.
    now = [datetime(2026, 5, 1, 12, 0, 30, tzinfo=UTC)]
    decided: list[str] = []
    decide = service.decide

    def counted(state, at, *, previous_run_active, found=None):  # type: ignore[no-untyped-def]
        decided.append(state.schedule_id)
        return decide(state, at, previous_run_active=previous_run_active, found=found)

    monkeypatch.setattr(service, "decide", counted)
    conf = settings.load(tmp_path / "data", nats_url="nats://unused")
    scheduler = service.Scheduler(conf, store, clock=lambda: now[0])
    ids = [new_id("sch") for _ in range(3)]
    for i, schedule_id in enumerate(ids):
        created = ScheduleCreated(cron=f"{10 * (i + 1)} * * * *", timezone="Europe/Berlin", input={})
        event = make_event(
            created, project="acme", aggregate_id=schedule_id, event_id=new_id("evt"), time=now[0]
        )
        await store.append(event, expected_seq=0)

    await scheduler.tick()
    assert sorted(decided) == sorted(ids)  # each looked at once: nothing is due before 12:10
    decided.clear()
    for _ in range(5):
        now[0] += timedelta(seconds=30)
        await scheduler.tick()
    assert decided == []  # still before 12:10: none was looked at again

    now[0] = datetime(2026, 5, 1, 12, 10, 1, tzinfo=UTC)
    await scheduler.tick()
    assert ids[0] in decided and ids[1] not in decided and ids[2] not in decided
    history = await store.load("acme", "schedule", ids[0])
    fired = [r.event.data for r in history if isinstance(r.event.data, ScheduleFired)]
    assert [f.planned_at for f in fired] == [datetime(2026, 5, 1, 12, 10, tzinfo=UTC)]

    decided.clear()
    late = make_event(
        ScheduleCreated(cron="0 * * * *", timezone="UTC", input={}),
        project="acme",
        aggregate_id=new_id("sch"),
        event_id=new_id("evt"),
        time=now[0],
    )
    await store.append(late, expected_seq=0)
    await scheduler.tick()
    assert decided == [late.aggregate_id]  # a new one is looked at; the sleeping ones are not

    # A deleted schedule leaves nothing of itself behind in the scheduler.
    seq = (await store.load("acme", "schedule", ids[1]))[-1].seq
    deleted = make_event(ScheduleDeleted(), project="acme", aggregate_id=ids[1], event_id=new_id("evt"))
    await store.append(deleted, expected_seq=seq)
    assert ids[1] in scheduler._asleep
    await scheduler.tick()
    assert ids[1] not in scheduler._asleep and ids[1] not in scheduler._verified
    assert ids[2] in scheduler._asleep


@pytest.fixture
def walks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The schedules whose cron a step walked (``due``), one entry per walk."""
    walked: list[str] = []
    due = service.due

    def counted(state, now):  # type: ignore[no-untyped-def]
        walked.append(state.schedule_id)
        return due(state, now)

    monkeypatch.setattr(service, "due", counted)
    return walked


async def test_a_long_catch_up_walks_the_cron_once(
    store: EventStore, tmp_path: Path, walks: list[str]
) -> None:
    # Each firing walked the cron again, from the time it fired to now: catching up on 1,000
    # planned times of a minutely schedule after a day down took ~49 s of CPU.
    start = datetime(2026, 5, 1, 12, 0, 30, tzinfo=UTC)
    now = [start]
    scheduler = service.Scheduler(
        settings.load(tmp_path / "data", nats_url="nats://unused"), store, clock=lambda: now[0]
    )
    created = ScheduleCreated(cron="* * * * *", timezone="UTC", input={}, catch_up="all", catch_up_limit=40)
    schedule_id = new_id("sch")
    await store.append(
        make_event(created, project="acme", aggregate_id=schedule_id, event_id=new_id("evt"), time=start),
        expected_seq=0,
    )
    now[0] = start + timedelta(days=1)
    await scheduler.tick()
    history = await store.load("acme", "schedule", schedule_id)
    fired = [r.event.data for r in history if isinstance(r.event.data, ScheduleFired)]
    last = datetime(2026, 5, 2, 12, 0, tzinfo=UTC)
    assert [f.planned_at for f in fired] == [last - timedelta(minutes=39 - i) for i in range(40)]
    assert [f.missed for f in fired] == [24 * 60 - 40] + [0] * 39
    assert walks == [schedule_id]


async def test_a_schedule_queued_behind_its_previous_run_walks_nothing_meanwhile(
    store: EventStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, walks: list[str]
) -> None:
    # While the run it waits for went on (up to a run's timeout, days), every tick walked the
    # cron from its last firing to now, twice: seconds of the platform's loop per tick.
    async def still_running(project: str, run_id: str | None) -> bool:
        return True

    start = datetime(2026, 5, 1, 12, 0, 30, tzinfo=UTC)
    now = [start]
    scheduler = service.Scheduler(
        settings.load(tmp_path / "data", nats_url="nats://unused"), store, clock=lambda: now[0]
    )
    monkeypatch.setattr(scheduler, "_running", still_running)
    for overlap in ("queue", "skip"):
        created = ScheduleCreated(cron="* * * * *", timezone="UTC", input={}, overlap=overlap)
        event = make_event(
            created, project="acme", aggregate_id=f"sch_{overlap}", event_id=new_id("evt"), time=start
        )
        await store.append(event, expected_seq=0)
    for _ in range(5):
        now[0] += timedelta(hours=6)
        await scheduler.tick()
    assert "sch_queue" not in walks and walks.count("sch_skip") == 5  # skip consumes what is due
    queued = await store.load("acme", "schedule", "sch_queue")
    assert not [r for r in queued if isinstance(r.event.data, ScheduleFired)]


async def test_a_failover_race_on_one_planned_time_queues_one_run(
    store: EventStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fired event's id was derived from the schedule and planned time only, so it was the
    # same from every instance: B, whose first append went unanswered while A fired the same
    # time, retried, found the aggregate's last event carrying "its" id (A's), took it for its
    # own and queued a second run for the one planned time.
    async def ready(store: EventStore, project: str, deployment: str | None, environment: str) -> Resolved:
        return Resolved(
            deployment_id="dep_" + "0" * 26, project=project, name="x", number=1, environment=environment
        )

    monkeypatch.setattr(service, "ready_deployment", ready)
    start = datetime(2026, 5, 1, 12, 0, 30, tzinfo=UTC)
    now = [start]
    conf = settings.load(tmp_path / "data", nats_url="nats://unused")
    store_b = EventStore(store.nc, store.settings)
    a = service.Scheduler(conf, store, clock=lambda: now[0])
    b = service.Scheduler(conf, store_b, clock=lambda: now[0])
    schedule_id = new_id("sch")
    created = ScheduleCreated(cron="* * * * *", timezone="UTC", input={})
    await store.append(
        make_event(created, project="acme", aggregate_id=schedule_id, event_id=new_id("evt"), time=start),
        expected_seq=0,
    )
    publish = store_b.js.publish
    unanswered = [True]

    async def a_fires_meanwhile(subject: str, body: bytes, **kwargs: Any) -> Any:
        if ".schedule." in subject and unanswered:
            unanswered.pop()
            await a.tick()
            raise TimeoutError
        return await publish(subject, body, **kwargs)

    monkeypatch.setattr(store_b.js, "publish", a_fires_meanwhile)
    now[0] = start + timedelta(minutes=1)
    await b.tick()
    assert not unanswered  # B's first append did go unanswered while A fired
    history = await store.load("acme", "schedule", schedule_id)
    fired = [r.event.data for r in history if isinstance(r.event.data, ScheduleFired)]
    assert len(fired) == 1 and fired[0].run_id
    stored = [raw.decode().event for raw in await store.load_raw(f"{store.prefix}.>")]
    assert [e.aggregate_id for e in stored if isinstance(e.data, RunQueued)] == [fired[0].run_id]
