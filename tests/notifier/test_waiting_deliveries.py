"""Deliveries that wait unacknowledged (a retry, a blocker, a full lane) against the real
server: however many one project has, the server goes on handing out everyone else's."""

from __future__ import annotations

import asyncio

from crewyard.core.events import DeliveryQueued, make_event
from crewyard.core.ids import new_id
from crewyard.core.webhooks import RetryPolicy
from crewyard.eventstore import EventStore, WorkQueue
from crewyard.notifier.deliver import Deliverer

#: The bound the delivery consumer had: this many waiting deliveries stopped every other one.
OLD_BOUND = 10_000


def _queued(project: str) -> DeliveryQueued:
    return DeliveryQueued(
        webhook_id=f"whk_{project}",
        delivery_id=new_id("dlv"),
        event="run.succeeded",
        source_event_id=new_id("evt"),
        source_seq=1,
        source_type="run.completed",
        source_aggregate="run",
        source_id=new_id("run"),
    )


async def _append(store: EventStore, project: str, n: int) -> None:
    for start in range(0, n, 1000):
        events = [
            make_event(_queued(project), project=project, aggregate_id=new_id("dlg"), event_id=new_id("evt"))
            for _ in range(min(1000, n - start))
        ]
        futures = [await store.append_nowait(e) for e in events]
        await asyncio.gather(*futures)


def _deliverer(store: EventStore) -> Deliverer:
    return Deliverer(store, None, None, None, policy=RetryPolicy(), concurrency=4, ack_wait=30)  # type: ignore[arg-type]


async def test_one_projects_waiting_retries_never_stop_another_projects_delivery(store: EventStore) -> None:
    queue = _deliverer(store).queue
    await queue.start()
    await _append(store, "mallory", OLD_BOUND + 50)
    waiting = 0
    while waiting < OLD_BOUND + 50:
        items = await queue.fetch(1000, timeout=2.0)
        assert items, f"handed out nothing after {waiting} waiting deliveries"
        for item in items:
            await item.nak(delay=3600.0)  # a retry an hour away, as a failing receiver's would be
        waiting += len(items)
    await store.nc.flush()
    await _append(store, "alice", 1)
    got = await queue.fetch(10, timeout=2.0)
    assert [i.event.decode(store.prefix).event.project for i in got] == ["alice"]
    _, unacknowledged = await queue.backlog()
    assert unacknowledged == OLD_BOUND + 51
    await queue.close()


async def test_a_delivery_consumer_made_with_the_old_bound_loses_it_at_start(store: EventStore) -> None:
    deliverer = _deliverer(store)
    old = WorkQueue(store, deliverer.queue.durable, deliverer.queue.filter_subject, max_deliver=-1)
    await old.start()
    info = await store.js.consumer_info(store.stream, old.durable)
    assert info.config.max_ack_pending == OLD_BOUND
    await old.close()
    await deliverer.queue.start()
    info = await store.js.consumer_info(store.stream, old.durable)
    assert info.config.max_ack_pending == -1
    await deliverer.queue.close()
