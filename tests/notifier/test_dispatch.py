"""The dispatch step: FastStream routing (in-memory broker) and the dispatcher against a real
event store (unreadable events set aside, missing earlier deliveries queued first)."""

from __future__ import annotations

from faststream.nats import NatsBroker, TestNatsBroker

from crewyard.core.events import (
    ProjectCreated,
    RunCompleted,
    RunQueued,
    RunStarted,
    WebhookCreated,
    make_event,
)
from crewyard.core.ids import new_id
from crewyard.core.webhooks import fold_group, group_id
from crewyard.eventstore import EventStore, RawEvent, set_aside_counts
from crewyard.notifier.dispatch import Dispatcher, subscribe

PREFIX = "crewyard.evt"


async def test_lifecycle_events_reach_the_handler_and_nothing_else():
    got: list[RawEvent] = []

    async def handle(batch: list[RawEvent]) -> int:
        got.extend(batch)
        return 0

    broker = NatsBroker()
    subscribe(broker, handle, stream="CREWYARD_EVENTS", prefix=PREFIX)
    run, dep = new_id("run"), new_id("dep")
    wanted = {
        f"{PREFIX}.acme.run.{run}.run.completed",
        f"{PREFIX}.acme.run.{run}.run.started",
        f"{PREFIX}.acme.deployment.{dep}.deployment.ready",
    }
    ignored = {
        f"{PREFIX}.acme.run.{run}.log",
        f"{PREFIX}.acme.run.{run}.tool.called",
        f"{PREFIX}.acme.deployment.{dep}.deployment.build.log",
        f"{PREFIX}.acme.webhook.whk_x.webhook.created",
    }
    async with TestNatsBroker(broker) as br:
        for subject in sorted(wanted | ignored):
            await br.publish(b'{"not": "decoded here"}', subject, stream="CREWYARD_EVENTS")
    assert {r.subject for r in got} == wanted
    assert all(r.data == b'{"not": "decoded here"}' for r in got)


async def append(store: EventStore, payload, aggregate_id: str, project: str = "acme") -> int:
    event = make_event(payload, project=project, aggregate_id=aggregate_id, event_id=new_id("evt"))
    return await store.append(event)


async def test_unreadable_events_are_set_aside(store: EventStore):
    before = set_aside_counts().get("notifier dispatch", 0)
    queued = await Dispatcher(store).handle(
        RawEvent(7, f"{store.prefix}.acme.run.run_x.run.completed", b"{oops")
    )
    assert queued == 0
    assert set_aside_counts()["notifier dispatch"] == before + 1


async def test_a_late_event_queues_the_earlier_ones_of_its_run_first(store: EventStore):
    run, dep = new_id("run"), new_id("dep")
    await append(store, ProjectCreated(name="acme"), "acme")
    hook = new_id("whk")
    await append(store, WebhookCreated(url="http://x/", events=["*"], secret="sealed"), hook)
    await append(store, RunQueued(deployment_id=dep, input={}), run)
    started = await append(store, RunStarted(runner_id="r", backend="process", isolated=False), run)
    done = await append(store, RunCompleted(output=1), run)
    dispatcher = Dispatcher(store)
    # The terminal event is dispatched first (another instance still has the start).
    last = await store.get(done)
    assert await dispatcher.handle(last) == 2
    assert await Dispatcher(store).handle(await store.get(started)) == 0  # already queued: nothing
    group = fold_group(group_id(hook, run), await store.load("acme", "delivery", group_id(hook, run)))
    events = [d.event for d in sorted(group.deliveries.values(), key=lambda d: d.source_seq)]
    assert events == ["run.started", "run.succeeded"]
