"""The thread keeper: no thread stays busy with a run that is over, or that never came.

Every ``thread.run_accepted`` is a message of the durable consumer ``thread-keeper``, shared by
every runner. The message is handed back (``nak`` with a delay) while its run is pending or
running, and acknowledged once the thread is no longer busy with that run — after settling it
when nobody else did (the runner that ran it died between the run's end and the thread's, or
the run was canceled before it started). A run that is still not queued after
``thread_claim_checks`` looks never will be (its gateway died between the thread's write and
the run's): the thread goes back to what it was. Looks are counted in deliveries, so the
judgement is the broker's clock, never a comparison of two machines' clocks; a run queued
after all (a gateway stalled that long) is refused by the runner, since its thread is no
longer busy with it.
"""

from __future__ import annotations

import asyncio
import logging

from crewyard.core import run_state as rs
from crewyard.core import subjects
from crewyard.core.events import InvalidEvent, ThreadRunAccepted
from crewyard.eventstore import EventStore, StoreUnavailable, WorkItem, WorkQueue
from crewyard.threads import load_thread, settle

log = logging.getLogger("crewyard.runner")
DURABLE = "thread-keeper"
MAX_DELAY_S = 30.0


class ThreadKeeper:
    def __init__(self, store: EventStore, *, interval_s: float, claim_checks: int) -> None:
        self.store, self.interval_s, self.claim_checks = store, interval_s, claim_checks
        self.queue = WorkQueue(
            store,
            DURABLE,
            subjects.type_filter(ThreadRunAccepted.TYPE, "thread", store.prefix),
            ack_wait=max(30.0, 4 * interval_s),
            max_deliver=-1,
            # A busy thread's message stays handed out while its run lasts or waits: with a bound,
            # one project's thousands of busy threads stopped the keeper for everyone's.
            max_ack_pending=-1,
        )

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                items = await self.queue.fetch(20, timeout=1.0)
            except StoreUnavailable:
                await asyncio.sleep(1.0)
                continue
            for item in items:
                try:
                    await self.look(item)
                except StoreUnavailable:
                    await item.nak(delay=self.interval_s)
                except Exception:
                    log.exception("thread keeper failed on %s", item.event.subject)
                    await item.nak(delay=self.interval_s)
        await self.queue.close()

    async def look(self, item: WorkItem) -> None:
        try:
            event = item.event.decode(self.store.prefix).event
        except InvalidEvent:
            await item.term()
            return
        assert isinstance(event.data, ThreadRunAccepted)
        project, thread_id, run_id = event.project, event.aggregate_id, event.data.run_id
        state, _ = await load_thread(self.store, thread_id, project)
        if state.active_run_id != run_id:
            await item.ack()  # settled already (the usual case), or deleted
            return
        run = rs.fold(run_id, await self.store.load(project, "run", run_id, types=rs.LIFECYCLE))
        gave_up = not run.exists and item.deliveries >= self.claim_checks
        settled = (run.is_terminal or gave_up) and await settle(
            self.store, project, thread_id, run_id, gave_up=gave_up
        )
        if settled:
            if gave_up:
                log.warning("thread %s: run %s was never queued; the thread is free again", thread_id, run_id)
            await item.ack()
            return
        await item.nak(delay=min(self.interval_s * max(item.deliveries, 1), MAX_DELAY_S))
