"""The dispatch step: FastStream routing (in-memory broker and a real server: nothing fetched is
left waiting for a redelivery) and the dispatcher against a real event store (unreadable events
set aside, missing earlier deliveries queued first, each run's events in order)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time

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
from crewyard.core.webhooks import EVENT_MAP, fold_group, group_id
from crewyard.eventstore import EventStore, RawEvent, credential_options, set_aside_counts
from crewyard.notifier.dispatch import SOURCES, Dispatcher, subscribe

PREFIX = "crewyard.evt"


async def test_lifecycle_events_reach_the_handler_and_nothing_else():
    got: list[RawEvent] = []

    async def handle(raw: RawEvent) -> int:
        got.append(raw)
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


async def test_a_body_unlike_its_content_type_still_reaches_the_handler():
    # FastStream decodes by the message's content type before calling the handler: a body that
    # is not the JSON it claims would never reach the dispatcher (which sets such events aside)
    # and would come back forever.
    got: list[bytes] = []

    async def handle(raw: RawEvent) -> int:
        got.append(raw.data)
        return 0

    broker = NatsBroker()
    subscribe(broker, handle, stream="CREWYARD_EVENTS", prefix=PREFIX)
    subject = f"{PREFIX}.acme.run.{new_id('run')}.run.completed"
    async with TestNatsBroker(broker) as br:
        for body in (b"{oops", b"\xff\xfe", b""):
            await br.publish(
                body, subject, stream="CREWYARD_EVENTS", headers={"content-type": "application/json"}
            )
    assert got == [b"{oops", b"\xff\xfe", b""]


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


async def test_a_run_of_a_deployment_whose_creation_is_unreadable_is_still_delivered(store: EventStore):
    # Its name could not be read: the handler raised, the run's event came back at once, forever,
    # and none of that deployment's runs was delivered.
    run, dep = new_id("run"), new_id("dep")
    hook = new_id("whk")
    await append(store, WebhookCreated(url="http://x/", events=["*"], secret="sealed"), hook)
    await store.js.publish(f"{store.prefix}.acme.deployment.{dep}.deployment.created", b"{oops")
    await append(store, RunQueued(deployment_id=dep, input={}), run)
    started = await append(store, RunStarted(runner_id="r", backend="process", isolated=False), run)
    before = set_aside_counts().get("notifier dispatch", 0)
    assert await Dispatcher(store).handle(await store.get(started)) == 1
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


async def test_every_event_is_handled_on_its_first_delivery_while_the_event_loop_is_busy(
    store: EventStore, nats_url: str, nats_admin: str
):
    # FastStream's batch fetch loop dropped what it had fetched when nats-py ended a later fetch
    # of the same batch with a plain TimeoutError — on a busy event loop about one event in
    # seven, each back only after ack_wait. Here ack_wait is ten minutes: a dropped event does not
    # come back within the test.
    count, got, all_in = 30, [], asyncio.Event()

    async def handle(raw: RawEvent) -> int:
        got.append(raw.subject)
        if len(got) >= count:
            all_in.set()
        return 0

    async def busy() -> None:  # a loaded box: the loop answers late
        while True:
            time.sleep(0.03)  # noqa: ASYNC251 — blocking the loop is the point
            await asyncio.sleep(0)

    broker = NatsBroker(nats_url, **credential_options(nats_admin))
    subscribe(broker, handle, stream=store.stream, prefix=store.prefix, ack_wait=600)
    hog = asyncio.create_task(busy())
    await broker.start()
    sent: list[str] = []
    try:
        pauses = random.Random(7)
        for i in range(count):  # arriving now and then, so fetches end both full and empty
            await asyncio.sleep(pauses.choice([0.001, 0.05, 0.3, 0.6, 0.9, 1.0]))
            subject = f"{store.prefix}.acme.run.run_{i}.run.started"
            await store.js.publish(subject, b"{}")
            sent.append(subject)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_in.wait(), 30)
    finally:
        hog.cancel()
        await broker.stop()
    assert sorted(got) == sorted(sent), f"never handled: {sorted(set(sent) - set(got))}"


async def test_one_instance_takes_each_runs_events_in_stream_order(store: EventStore):
    spans: list[tuple[str, str]] = []

    class Recording(Dispatcher):
        async def handle(self, raw: RawEvent) -> int:
            spans.append(("start", raw.subject))
            await asyncio.sleep(0.2 if raw.seq == 1 else 0.01)
            spans.append(("end", raw.subject))
            return 1

    dispatcher = Recording(store)
    a1, a2 = (
        RawEvent(n, f"{PREFIX}.acme.run.run_a.run.{t}", b"") for n, t in ((1, "started"), (3, "completed"))
    )
    b1 = RawEvent(2, f"{PREFIX}.acme.run.run_b.run.started", b"")
    assert await asyncio.gather(*(dispatcher.handle_in_order(r) for r in (a1, b1, a2))) == [1, 1, 1]
    # run_b did not wait for run_a; run_a's second event waited for its first.
    assert spans.index(("end", b1.subject)) < spans.index(("end", a1.subject))
    assert spans.index(("end", a1.subject)) < spans.index(("start", a2.subject))
    assert len(dispatcher._sources) == 0  # nothing kept once handled


def test_every_event_a_webhook_may_subscribe_to_reaches_the_dispatcher():
    # thread.checkpointed was accepted as a subscription while no durable received thread events:
    # such a webhook (or one on "*") silently got nothing for it.
    families = {aggregate for aggregate, _ in SOURCES.values()}
    assert {source.split(".")[0] for source in EVENT_MAP.values()} <= families
