"""A service whose work queue cannot be made yet (JetStream without a quorum, a broker still
coming back) waits for it and binds it once it can, rather than exiting: a runner restarted
during a quorum loss ended at its start ("cannot bind work consumer")."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from crewyard.eventstore import (
    EventStore,
    StoreUnavailable,
    StreamSettings,
    WorkQueue,
    connect,
    ensure_stream,
)
from crewyard.servicekit import bind_when_able


@pytest.fixture
async def unmade(nats_url: str, nats_admin: str) -> AsyncIterator[EventStore]:
    """An event store whose stream does not exist yet: no consumer can be made on it."""
    tag = uuid.uuid4().hex[:10]
    settings = StreamSettings(name=f"W_{tag}", prefix=f"w{tag}.evt", object_bucket=f"W_{tag}_OBJ")
    nc = await connect(nats_url, name="test", creds=nats_admin)
    yield EventStore(nc, settings)
    await nc.drain()


def _failing_once_seen(queue: WorkQueue) -> asyncio.Event:
    """Set once a try to bind ``queue`` has failed."""
    failed, start = asyncio.Event(), queue.start

    async def watched() -> None:
        try:
            await start()
        except StoreUnavailable:
            failed.set()
            raise

    queue.start = watched  # type: ignore[method-assign]
    return failed


async def _tried_once(store: EventStore) -> tuple[WorkQueue, asyncio.Event, asyncio.Task[bool]]:
    """A work queue on ``store`` being bound, once a try has failed: the queue, the service's
    stop, and the binding."""
    queue = WorkQueue(store, "workers", f"{store.prefix}.*.run.*.run.queued")
    failed, stop = _failing_once_seen(queue), asyncio.Event()
    binding = asyncio.create_task(bind_when_able(queue, stop))
    async with asyncio.timeout(30):
        await failed.wait()
    return queue, stop, binding


async def test_a_work_queue_that_cannot_be_made_yet_is_bound_once_it_can(unmade: EventStore) -> None:
    queue, _stop, binding = await _tried_once(unmade)
    async with asyncio.timeout(30):
        assert not binding.done()  # still trying: the service did not end
        await ensure_stream(unmade.js, unmade.settings)  # the broker can make it now
        assert await binding is True
        assert await queue.fetch(1, timeout=0.2) == []  # bound: it reads
    await queue.close()


async def test_a_stop_ends_the_wait_for_a_work_queue(unmade: EventStore) -> None:
    _queue, stop, binding = await _tried_once(unmade)
    stop.set()
    async with asyncio.timeout(30):
        assert await binding is False
