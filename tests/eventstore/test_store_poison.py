"""Nothing unreadable goes in; whatever unreadable is found is set aside and reading goes on."""

import asyncio
import time

import pytest

from crewyard.core import run_state as rs
from crewyard.core.events import (
    InvalidEvent,
    RunCompleted,
    RunQueued,
    Unreadable,
    encode,
    make_event,
)
from crewyard.core.ids import new_id
from crewyard.eventstore import EventStore, WorkQueue, set_aside_counts
from crewyard.testing.poison import poison


def _ev(payload, run_id, project="acme"):
    return make_event(payload, project=project, aggregate_id=run_id, event_id=new_id("evt"))


async def _publish(store: EventStore, items: list[tuple[str, bytes]]) -> None:
    for subject, data in items:  # straight into the stream, as any client with publish rights could
        await store.js.publish(subject, data, stream=store.stream)


async def test_append_refuses_an_event_the_decoder_would_refuse(store: EventStore):
    run = new_id("run")
    before = await store.last_seq()
    with pytest.raises(InvalidEvent):
        await store.append(_ev(RunQueued(deployment_id="d", input={"n": 10**400}), run), expected_seq=0)
    with pytest.raises(InvalidEvent):
        await store.append_nowait(_ev(RunCompleted(output=_deep(100)), run))
    with pytest.raises(InvalidEvent):
        await store.append(_ev(RunCompleted(), run, project="acme\n"))
    assert await store.last_seq() == before


def _deep(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


async def test_load_keeps_the_place_of_an_unreadable_event_so_writers_can_go_on(store: EventStore):
    run = new_id("run")
    await store.append(_ev(RunQueued(deployment_id="d", input={}), run), expected_seq=0)
    await _publish(store, poison(store.prefix, "acme", run, new_id("run"))[:6])
    history = await store.load("acme", "run", run)
    assert isinstance(history[0].event.data, RunQueued)
    assert all(isinstance(r.event.data, Unreadable) for r in history[1:]) and len(history) == 7
    assert [r.seq for r in await store.load_any("run", run)] == [r.seq for r in history]
    state = rs.fold(run, history)
    assert state.status == rs.PENDING and state.project == "acme"
    started = rs.decide_start(state, runner_id="r", backend="process", isolated=False, entrypoint="a:b")
    await store.append(_ev(started, run), expected_seq=state.version)  # the true last sequence
    assert rs.fold(run, await store.load_any("run", run)).status == rs.RUNNING


async def test_a_valid_event_on_a_subject_that_contradicts_it_is_not_believed(store: EventStore):
    victim, other = new_id("run"), new_id("run")
    await store.append(_ev(RunQueued(deployment_id="d", input={}), victim), expected_seq=0)
    forged = encode(_ev(RunCompleted(output="forged"), other))
    await store.js.publish(f"{store.prefix}.acme.run.{victim}.run.completed", forged, stream=store.stream)
    history = await store.load("acme", "run", victim)
    assert isinstance(history[-1].event.data, Unreadable)
    assert rs.fold(victim, history).status == rs.PENDING


async def test_a_work_queue_terminates_poison_instead_of_handing_it_out_again(store: EventStore):
    queue = WorkQueue(store, "poisoned", f"{store.prefix}.*.run.*.run.queued", ack_wait=5.0, max_deliver=-1)
    await queue.start()
    before = set_aside_counts().get("poisoned queue", 0)
    run = new_id("run")
    await _publish(store, poison(store.prefix, "acme", run, new_id("run")))
    await store.append(_ev(RunQueued(deployment_id="d", input={}), run))
    got = []
    while len(got) < 1:
        got += await queue.fetch(10, timeout=2.0)
    assert [item.event.decode().event.aggregate_id for item in got] == [run]
    await got[0].ack()
    assert set_aside_counts()["poisoned queue"] - before == 5
    # Terminated, not waiting for redelivery: nothing pending, nothing unacknowledged.
    deadline = time.monotonic() + 30
    while True:
        info = await store.js.consumer_info(store.stream, "poisoned")
        if (info.num_pending == 0 and info.num_ack_pending == 0) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert info.num_pending == 0 and info.num_ack_pending == 0 and info.num_redelivered == 0
    assert await queue.fetch(10, timeout=6.5) == []  # still nothing after ack_wait has passed
    await queue.close()
