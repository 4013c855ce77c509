"""The runner's queues (runs, busy threads) hand out every project's messages however many of one
project's wait."""

from __future__ import annotations

from pathlib import Path

import pytest

from crewyard.eventstore import EventStore, WorkQueue
from crewyard.runner.keeper import ThreadKeeper
from crewyard.runner.service import run_queue
from crewyard.settings import Settings


@pytest.mark.parametrize("which", ["runs", "threads"])
async def test_the_queue_has_no_bound_on_messages_handed_out_also_when_made_with_one(
    store: EventStore, tmp_path: Path, which: str
) -> None:
    """Runs waiting for a concurrency slot stay handed out (a nak with a delay): with the old
    bound of 10,000, one project's 10,000 waiting runs stopped the server handing out any other
    project's run (the same server behaviour as tests/notifier/test_waiting_deliveries.py); a busy
    thread's message stays handed out while its run lasts."""
    if which == "runs":
        queue = run_queue(store, Settings(data_dir=tmp_path))
    else:
        queue = ThreadKeeper(store, interval_s=1.0, claim_checks=3).queue
    old = WorkQueue(store, queue.durable, queue.filter_subject, max_deliver=-1)
    await old.start()
    info = await store.js.consumer_info(store.stream, queue.durable)
    assert info.config.max_ack_pending == 10_000
    await old.close()
    await queue.start()
    info = await store.js.consumer_info(store.stream, queue.durable)
    assert info.config.max_ack_pending == -1
    await queue.close()
