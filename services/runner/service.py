"""The runner service: takes queued runs from a durable consumer shared by every runner.

Each instance runs up to ``runner_concurrency`` runs at once and fetches a new message only when
it has a free slot, so JetStream balances work across instances and machines. While a run is
executing its message is kept alive with ``in_progress``; if this process dies, the message is
delivered again after ``ack_wait`` to another runner, which leaves the run alone while its owner
holds its lease (``liveness.py``) and otherwise retries it (or fails it ``runner_lost`` once the
attempts are used up). One attempt, from its claim to its outcome, is ``executor.py``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from crewyard import logs, metrics
from crewyard.core import run_state as rs
from crewyard.core import subjects
from crewyard.core.events import RunCanceled, RunQueued
from crewyard.environments import EnvironmentStore
from crewyard.eventstore import ConcurrencyConflict, EventStore, StoreUnavailable, WorkItem, WorkQueue
from crewyard.objects import ObjectStore
from crewyard.secrets import SecretBox
from crewyard.servicekit import bind_when_able
from crewyard.settings import Settings
from crewyard.workspace import Workspace

from .attempts import Attempt, fence_when_silent, follow_cancels
from .backends import ExecutionBackend
from .changes import follow_changes
from .execution import finish, run_budget
from .executor import Executor
from .identity import RunnerIdentity
from .keeper import ThreadKeeper
from .liveness import Liveness
from .pools import Pools
from .slots import Slots
from .specs import Specs
from .workfolders import own as own_work_folder
from .workfolders import sweep as sweep_work_folders

log = logging.getLogger("crewyard.runner")


async def _free_slot(free: asyncio.Semaphore, stop: asyncio.Event) -> bool:
    """Wait for a free slot; False (and no slot taken) once ``stop`` is set — a runner whose slots
    are all busy must still notice that it is asked to stop."""
    if stop.is_set():
        return False
    acquire = asyncio.create_task(free.acquire())
    stopping = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({acquire, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if acquire in done:
        if stop.is_set():
            free.release()
            return False
        return True
    acquire.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await acquire
    if acquire.done() and not acquire.cancelled():
        free.release()  # it was granted while being cancelled
    return False


def run_queue(store: EventStore, settings: Settings) -> WorkQueue:
    """The queued runs, shared by every runner. ``max_deliver`` unlimited: a run waiting for a
    concurrency slot is handed back many times (attempts that really failed are counted in the
    run's own events instead). No bound on messages handed out: runs waiting for a slot are, and
    with a bound one project's thousands of waiting runs stopped every other project's runs."""
    return WorkQueue(
        store,
        "runner",
        subjects.type_filter("run.queued", "run", store.prefix),
        ack_wait=settings.runner_ack_wait_s,
        max_deliver=-1,
        max_ack_pending=-1,
    )


class Runner:
    def __init__(
        self,
        settings: Settings,
        store: EventStore,
        objects: ObjectStore,
        backend: ExecutionBackend,
        secrets: SecretBox,
    ) -> None:
        self.settings = settings
        self.store = store
        self.objects = objects
        self.backend = backend
        self.secrets = secrets
        self.identity = RunnerIdentity.claim(settings.data_dir, settings.runner_id)
        self.runner_id = self.identity.runner_id
        self.work_dir = own_work_folder(settings.work_dir)  # see workfolders.py
        self.workspace = Workspace(settings.cache_dir, objects, settings.archive_limits)
        self.environments = EnvironmentStore(settings.cache_dir, objects)
        self.slots = Slots(store)
        self.liveness = Liveness(store, self.runner_id, settings.runner_lease_s)
        self.budget = run_budget(settings, store)
        self.queue = run_queue(store, settings)
        self.active: dict[str, Attempt] = {}
        self._taking: set[str] = set()  # runs whose message one of our tasks is handling now
        self._tasks: set[asyncio.Task[None]] = set()
        self.specs = Specs(
            settings,
            store,
            secrets,
            self.workspace,
            self.environments,
            backend,
            self.runner_id,
            self.budget.max_output,
            work_dir=self.work_dir,
        )
        self.pools = Pools(
            backend,
            work_dir=self.work_dir,
            budget=settings.warm_memory_bytes,
            idle_s=settings.warm_idle_s,
            renew=self.specs.renewal,
        )
        self.executor = Executor(
            settings,
            store,
            objects,
            backend,
            runner_id=self.runner_id,
            work_dir=self.work_dir,
            liveness=self.liveness,
            slots=self.slots,
            specs=self.specs,
            pools=self.pools,
            budget=self.budget,
            active=self.active,
        )

    async def run(self, stop: asyncio.Event) -> None:
        if not self.backend.isolated:  # the operator chose it; said at every start, in every log
            log.warning(
                "runs execute on the %s backend, which is NOT isolated: crews run as this runner's user,"
                " with its files and network (development only)",
                self.backend.name,
            )
        if not await bind_when_able(self.queue, stop):
            return
        removed = await self.backend.cleanup_orphans(self.runner_id)
        if removed:
            log.warning("ended %d run environments that had outlived their runner", removed)
        folders = await asyncio.to_thread(sweep_work_folders, self.settings.work_dir)
        if folders:
            log.info("removed the work folders of %d runner processes that are gone", folders)
        metrics.refresh_with("consumer:runner", metrics.consumer_backlog("runner", self.queue.backlog))
        listener = asyncio.create_task(follow_cancels(self.store, self.active, stop))
        beat = asyncio.create_task(self.liveness.beat())
        fencer = asyncio.create_task(fence_when_silent(self.liveness, self.active))
        keeper = asyncio.create_task(self.pools.maintain())
        changes = asyncio.create_task(follow_changes(self.store, self.pools, stop))
        thread_keeper = ThreadKeeper(
            self.store,
            interval_s=self.settings.thread_keeper_interval_s,
            claim_checks=self.settings.thread_claim_checks,
        )
        keeping = asyncio.create_task(thread_keeper.run(stop))
        free = asyncio.Semaphore(self.settings.runner_concurrency)
        try:
            while await _free_slot(free, stop):
                if not self.liveness.fresh():  # no new work without a lease: see liveness.py
                    free.release()
                    await asyncio.sleep(min(1.0, self.liveness.interval_s))
                    continue
                try:
                    items = await self.queue.fetch(1, timeout=1.0)
                except StoreUnavailable:  # may fail at once (no quorum): not a busy loop
                    items = []
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 1.0)
                if not items:
                    free.release()
                    continue
                task = asyncio.create_task(self._guarded(items[0]))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                task.add_done_callback(lambda _t: free.release())
        finally:
            # Draining: no new work, so no warm sandbox is needed any more; cancel requests and the
            # lease keep being followed while the runs we hold get their chance to finish.
            keeper.cancel()
            changes.cancel()
            await self.pools.close()
            await self._drain()
            listener.cancel()
            keeping.cancel()
            beat.cancel()
            fencer.cancel()
            if not self.liveness.runs:
                await self.liveness.close()
            self.identity.release()
            with contextlib.suppress(OSError):  # left with something in it: the next runner sweeps it
                self.work_dir.rmdir()

    async def _drain(self) -> None:
        """Let running attempts finish for up to ``runner_drain_s``, then hand the rest back:
        their crews get the cancel grace period and their runs are retried elsewhere."""
        if not self._tasks:
            return
        log.warning(
            "runner %s stopping: waiting up to %gs for %d run(s)",
            self.runner_id,
            self.settings.runner_drain_s,
            len(self.active),
        )
        _, pending = await asyncio.wait(self._tasks, timeout=self.settings.runner_drain_s)
        if not pending:
            return
        for attempt in list(self.active.values()):
            log.warning("handing run %s back: it is retried by another runner", attempt.run_id)
            attempt.hand_back()
        await asyncio.wait(self._tasks, timeout=self.settings.cancel_grace_s + 20)

    async def _guarded(self, item: WorkItem) -> None:
        try:
            await self._handle(item)
        except StoreUnavailable:
            log.warning("event store unavailable; the run will be delivered again")
            await item.nak(delay=2.0)
        except Exception:
            log.exception("runner failed handling %s", item.event.subject)
            await item.nak(delay=5.0)

    async def _handle(self, item: WorkItem) -> None:
        queued = item.event.decode().event
        deployment_id = queued.data.deployment_id if isinstance(queued.data, RunQueued) else None
        with logs.bind(run_id=queued.aggregate_id, project=queued.project, deployment_id=deployment_id):
            await self._take(item, queued.aggregate_id, queued.project)

    async def _take(self, item: WorkItem, run_id: str, project: str) -> None:
        if run_id in self._taking or run_id in self.active:
            # Delivered again while we handle it (a set-up slower than ack_wait): one execution of
            # a run per runner. Keep the message alive; the task that holds it settles it.
            log.warning("run %s delivered again while this runner handles it: kept", run_id)
            await item.in_progress()
            return
        self._taking.add(run_id)
        try:
            await self._take_once(item, run_id, project)
        finally:
            self._taking.discard(run_id)

    async def _take_once(self, item: WorkItem, run_id: str, project: str) -> None:
        for _ in range(5):
            state = rs.fold(run_id, await self.store.load(project, "run", run_id))
            if not state.exists:  # the message is the run's first event: a read that misses it is stale
                await item.nak(delay=1.0)
                return
            if state.is_terminal:
                await item.ack()
                return
            if state.status == rs.RUNNING:
                await self._orphaned(item, state)
                return
            try:
                await self.executor.execute(item, state)
                return
            except ConcurrencyConflict:
                continue  # canceled or started elsewhere in the meantime: look again
        await item.nak(delay=1.0)

    async def _orphaned(self, item: WorkItem, state: rs.RunState) -> None:
        if state.run_id in self.active:  # our own run, delivered again: keep it alive
            await item.in_progress()
            return
        # Our own id means our predecessor's attempt (one live process per id): certainly lost.
        if state.runner_id != self.runner_id and await self.liveness.holds(
            state.runner_id, state.run_id, state.attempt
        ):
            # Delivered again although its runner holds its lease (a broker restart or outage):
            # leave the run to its runner and look again later.
            log.warning(
                "run %s delivered again; its runner %s holds it: left alone", state.run_id, state.runner_id
            )
            await item.nak(delay=2 * self.liveness.interval_s)
            return
        # What was judged lost is this attempt: if the run moved on meanwhile (its owner retried
        # it, or another runner judged first), the retry or end below is not written over it.
        judged = (state.runner_id or "", state.attempt)
        if state.cancel_requested:
            ended = await finish(
                self.store,
                state.project,
                state.run_id,
                RunCanceled(reason="canceled while its runner was lost"),
                owner=judged,
            )
            if ended or await self.executor.is_over(state.run_id):
                await item.ack()
            else:  # it moved on to a newer attempt: the message is that attempt's
                await item.nak(delay=1.0)
            return
        await self.executor.retry_or_fail(
            item,
            state,
            "runner_lost",
            f"Runner {state.runner_id} was lost while executing the run",
            owner=judged,
        )
