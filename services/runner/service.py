"""The runner service: takes queued runs from a durable consumer shared by every runner.

Each instance runs up to ``runner_concurrency`` runs at once and fetches a new message only when
it has a free slot, so JetStream balances work across instances and machines. While a run is
executing its message is kept alive with ``in_progress``; if this process dies, the message is
delivered again after ``ack_wait`` to another runner, which leaves the run alone while its owner
holds its lease (``liveness.py``) and otherwise retries it (or fails it ``runner_lost`` once the
attempts are used up).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time

import msgspec

from crewyard import logs, metrics
from crewyard.core import envnames, subjects
from crewyard.core import run_state as rs
from crewyard.core.crewfile import CrewConfig
from crewyard.core.deployment_state import READY, DeploymentState, fold_deployment
from crewyard.core.events import RunCanceled, RunCompleted, RunFailed, RunQueued, RunRetrying, make_event
from crewyard.core.ids import new_id
from crewyard.environments import ArchiveCorrupt, BuildFailed, EnvironmentStore
from crewyard.eventstore import ConcurrencyConflict, EventStore, StoreUnavailable, WorkItem, WorkQueue
from crewyard.objects import ObjectStore, ObjectStoreError
from crewyard.secrets import SecretBox, SecretError
from crewyard.settings import Settings
from crewyard.workspace import Workspace

from . import specs
from .artifacts import collect
from .attempts import Attempt, fence_when_silent, follow_cancels, still_ours
from .backends import BackendError, ExecutionBackend, RunHandle, RunSpec
from .changes import follow_changes
from .execution import (
    Emitter,
    decide_outcome,
    finish,
    retry_or_fail,
    run_budget,
    run_warnings,
    supervise,
)
from .identity import RunnerIdentity
from .keeper import ThreadKeeper
from .liveness import Liveness
from .pools import PoolKey, Pools, Renewal
from .protocol import ThreadStart
from .session import RunSession
from .slots import Slots, run_limits
from .specs import Prepared, Specs, Warmth

log = logging.getLogger("crewyard.runner")
_STATUS = {RunCompleted: "succeeded", RunFailed: "failed", RunCanceled: "canceled"}
WAITING_FOR_SLOT_DELAY = 1.0


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
        self.workspace = Workspace(settings.cache_dir, objects, settings.archive_limits)
        self.environments = EnvironmentStore(settings.cache_dir, objects)
        self.slots = Slots(store)
        self.liveness = Liveness(store, self.runner_id, settings.runner_lease_s)
        self.budget = run_budget(settings, store)
        # max_deliver unlimited: a run waiting for a concurrency slot is handed back many times;
        # attempts that really failed are counted in the run's own events instead.
        self.queue = WorkQueue(
            store,
            "runner",
            subjects.type_filter("run.queued", "run", store.prefix),
            ack_wait=settings.runner_ack_wait_s,
            max_deliver=-1,
        )
        self.active: dict[str, Attempt] = {}
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
        )
        self.pools = Pools(
            backend,
            work_dir=settings.work_dir,
            budget=settings.warm_memory_bytes,
            idle_s=settings.warm_idle_s,
            renew=self.specs.renewal,
        )

    async def run(self, stop: asyncio.Event) -> None:
        if not self.backend.isolated:  # the operator chose it; said at every start, in every log
            log.warning(
                "runs execute on the %s backend, which is NOT isolated: crews run as this runner's user,"
                " with its files and network (development only)",
                self.backend.name,
            )
        await self.queue.start()
        removed = await self.backend.cleanup_orphans(self.runner_id)
        if removed:
            log.warning("ended %d run environments that had outlived their runner", removed)
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
                except StoreUnavailable:
                    items = []
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
                await self._execute(item, state)
                return
            except ConcurrencyConflict:
                continue  # canceled or started elsewhere in the meantime: look again
        await item.nak(delay=1.0)

    async def _retry_or_fail(
        self, item: WorkItem, state: rs.RunState, reason: str, message: str, attempt: int | None = None
    ) -> None:
        """After an infrastructure failure; with ``attempt``, only while that attempt of ours is
        the run's current one."""
        written = await retry_or_fail(
            self.store,
            state.project,
            state.run_id,
            reason=reason,
            error_message=message,
            max_attempts=self.settings.retry_max_attempts,
            backoff_s=self.settings.retry_backoff,
            owner=(self.runner_id, attempt) if attempt else None,
        )
        if isinstance(written, RunRetrying):
            await item.nak(delay=written.delay_s)  # the same message brings the run back
        elif written is None and not await self._is_over(state.run_id):
            await item.nak(delay=1.0)  # it moved on without us (a newer attempt): leave it the message
        else:
            await item.ack()

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
        if state.cancel_requested:
            await finish(
                self.store,
                state.project,
                state.run_id,
                RunCanceled(reason="canceled while its runner was lost"),
            )
            await item.ack()
            return
        await self._retry_or_fail(
            item, state, "runner_lost", f"Runner {state.runner_id} was lost while executing the run"
        )

    async def _is_over(self, run_id: str) -> bool:
        return rs.fold(run_id, await self.store.load_any("run", run_id)).is_terminal

    async def _execute(self, item: WorkItem, state: rs.RunState) -> None:
        run_id, project = state.run_id, state.project
        history = await self.store.load(project, "deployment", state.deployment_id)
        dep = fold_deployment(state.deployment_id, history)
        if dep.status != READY:
            await finish(
                self.store,
                project,
                run_id,
                RunFailed(
                    reason="infrastructure", error_message=f"deployment {state.deployment_id} is not ready"
                ),
            )
            await item.ack()
            return
        config = msgspec.convert(dep.config, CrewConfig)
        limits = await run_limits(self.store, project, state.deployment_id, config)
        if limits and not await self.slots.acquire(run_id, limits, self._is_over):
            await item.nak(delay=WAITING_FOR_SLOT_DELAY)  # stays pending, in line for a slot
            return
        attempt = Attempt(run_id, project)
        self.active[run_id] = attempt
        metrics.RUNS_ACTIVE.inc()
        work = self.settings.work_dir / run_id
        try:
            try:  # read now, after the run's POST: what a cold start would give it (see pools.py)
                env = await self.specs.environment(project, state.environment, config)
            except SecretError as exc:
                failed = RunFailed(reason="infrastructure", error_message=str(exc))
                await finish(self.store, project, run_id, failed)
                await item.ack()
                return
            secrets = [v for k, v in env.items() if k not in config.env]
            env, refused = envnames.split(env)  # stored before names were checked: never applied
            key = PoolKey(state.deployment_id, state.environment)
            fingerprint = specs.fingerprint(state.deployment_id, dep, config, env, self.specs.limits(config))
            sandbox = self.pools.take(key, fingerprint)
            started = rs.decide_start(
                state,
                runner_id=self.runner_id,
                backend=self.backend.name,
                isolated=self.backend.isolated,
                entrypoint=config.entrypoint,
                warm=sandbox is not None,
            )
            attempt.number = started.attempt
            event = make_event(started, project=project, aggregate_id=run_id, event_id=new_id("evt"))
            try:
                await self.liveness.claim(run_id, started.attempt)  # before run.started: see liveness.py
                attempt.started_seq = await self.store.append(event, expected_seq=state.version)
            except BaseException:
                if sandbox is not None:
                    self.pools.give_back(key, sandbox)  # never started: as good as before
                raise
            if state.created_at is not None:
                waited = (event.time - state.created_at).total_seconds()
                metrics.RUN_START_LATENCY.labels(self.backend.name).observe(max(waited, 0.0))
            warm = Warmth(key, fingerprint, sandbox)
            await self._run_started(item, state, dep, config, attempt, Prepared(env, refused, secrets), warm)
        finally:
            self.active.pop(run_id, None)
            metrics.RUNS_ACTIVE.dec()
            await self.liveness.release(run_id)
            if limits:
                await self.slots.release(run_id, list(limits))
            await asyncio.to_thread(shutil.rmtree, work, True)

    async def _start(
        self,
        state: rs.RunState,
        dep: DeploymentState,
        config: CrewConfig,
        env: dict[str, str],
        warm: Warmth,
        thread: ThreadStart | None = None,
    ) -> tuple[RunSpec, RunHandle]:
        """The run's warm sandbox, or a cold start; either way its pool keeps the next one ready."""
        handle: RunHandle
        if warm.sandbox is not None:
            spec, handle = warm.sandbox.spec, warm.sandbox.take(state.run_id, state.input, thread)
        else:
            spec = await self.specs.spec(
                run_id=state.run_id,
                deployment_id=state.deployment_id,
                dep=dep,
                config=config,
                env=env,
                input=state.input,
            )
            # The thread goes in this run's start only, never in the spec its pool warms from.
            handle = await self.backend.start(msgspec.structs.replace(spec, thread=thread))
        metrics.WARM_STARTS.labels("warm" if warm.sandbox else "cold", self.backend.name).inc()
        low, high = self.specs.pool_size(config)
        renewal = Renewal(warm.key, spec, warm.fingerprint)
        self.pools.offer(renewal, project=state.project, name=dep.name, low=low, high=high)
        return spec, handle

    async def _run_started(
        self,
        item: WorkItem,
        state: rs.RunState,
        dep: DeploymentState,
        config: CrewConfig,
        attempt: Attempt,
        prepared: Prepared,
        warm: Warmth,
    ) -> None:
        session = RunSession(self.store, self.objects, state, config.framework)
        try:
            refusal = await session.refusal()
            if refusal is not None:  # a thread run accepted too late: it never runs
                if warm.sandbox is not None:
                    self.pools.give_back(warm.key, warm.sandbox)  # never started: as good as before
                await finish(
                    self.store, state.project, state.run_id, RunFailed(reason="thread", error_message=refusal)
                )
                await item.ack()
                return
            await self._attempt(item, state, dep, config, attempt, prepared, warm, session)
        finally:
            await session.close()

    async def _attempt(
        self,
        item: WorkItem,
        state: rs.RunState,
        dep: DeploymentState,
        config: CrewConfig,
        attempt: Attempt,
        prepared: Prepared,
        warm: Warmth,
        session: RunSession,
    ) -> None:
        run_id, project = state.run_id, state.project
        t0 = time.monotonic()
        emitter = Emitter(self.store, project, run_id, prepared.secrets)
        for warning in run_warnings(
            config,
            prepared.refused,
            allow_host_network=self.settings.allow_host_network,
            isolated=self.backend.isolated,
        ):
            await emitter.log(warning, "warning")
        try:
            spec, handle = await self._start(state, dep, config, prepared.env, warm, session.thread)
        except BuildFailed as exc:  # the crew's dependencies: not worth retrying
            await finish(self.store, project, run_id, RunFailed(reason="crew_error", error_message=str(exc)))
            await item.ack()
            return
        except (BackendError, ObjectStoreError, OSError, ArchiveCorrupt) as exc:
            await emitter.log(f"could not start the run: {exc}", "error")
            await emitter.flush()
            await self._retry_or_fail(
                item, state, "infrastructure", f"Could not start the run: {exc}", attempt.number
            )
            return
        await attempt.started(handle)

        async def heartbeat() -> None:
            await item.in_progress()
            if not await still_ours(self.store, attempt, self.runner_id):
                await attempt.stop_now()

        timeout = state.timeout_s or config.timeout_s or self.settings.default_timeout_s
        outcome, status, timed_out, canceled = await supervise(
            handle,
            emitter,
            timeout_s=timeout,
            cancel=attempt.cancel,
            grace_s=self.settings.cancel_grace_s,
            heartbeat=heartbeat,
            heartbeat_every=min(self.settings.runner_ack_wait_s / 3, self.liveness.interval_s),
            budget=self.budget,
            serve=session.serve,
        )
        if attempt.fenced.is_set():
            await self._fenced(item, state, handle, emitter, attempt)
            return
        if attempt.handed_back:
            await self._handed_back(item, state, handle, emitter, attempt)
            return
        over = await self._collect(handle, spec, emitter)
        payload = decide_outcome(
            outcome=outcome,
            status=status,
            canceled="requested" if canceled else None,
            timed_out=timeout if timed_out else None,
            started=t0,
            limits=spec.limits,
        )
        if over and not isinstance(payload, RunFailed | RunCanceled):
            payload = RunFailed(reason="limit", error_message="Artifact limit exceeded: " + "; ".join(over))
        payload = await session.conclude(payload)  # a thread run's checkpoint, before its end
        await emitter.flush()
        written = await finish(self.store, project, run_id, payload, owner=(self.runner_id, attempt.number))
        if written:
            ended = _STATUS.get(type(payload), "failed")
            metrics.RUNS_FINISHED.labels(ended, self.backend.name).inc()
            metrics.RUN_DURATION.labels(ended, self.backend.name).observe(time.monotonic() - t0)
        if written or await self._is_over(run_id):
            await session.ended()
            await item.ack()
        else:
            # Someone declared this attempt lost while it ran (and queued the run again): the
            # outcome cannot be recorded, so leave the message for the run's next attempt.
            await item.nak(delay=1.0)

    async def _fenced(
        self, item: WorkItem, state: rs.RunState, handle: RunHandle, emitter: Emitter, attempt: Attempt
    ) -> None:
        """The attempt was killed as no longer ours: it records no outcome; if it is still the
        run's current attempt (our lease ran out), the run is retried."""
        with contextlib.suppress(BackendError):
            await handle.remove()
        await emitter.flush()
        silent, lease = self.liveness.silent_for(), self.liveness.lease_s
        message = f"Runner {self.runner_id} lost its lease (no event store for {silent:.0f}s of {lease:g}s)"
        await self._retry_or_fail(item, state, "runner_lost", message, attempt.number)

    async def _handed_back(
        self, item: WorkItem, state: rs.RunState, handle: RunHandle, emitter: Emitter, attempt: Attempt
    ) -> None:
        """Our runner is stopping and the run did not end in time: the attempt records no outcome
        and the run is retried (by another runner) per the retry policy."""
        with contextlib.suppress(BackendError):
            await handle.remove()
        await emitter.log(
            f"runner {self.runner_id} is stopping: the run is handed to another runner", "warning"
        )
        await emitter.flush()
        metrics.RUNS_HANDED_BACK.inc()
        message = f"Runner {self.runner_id} stopped before the run ended; the run was handed back"
        await self._retry_or_fail(item, state, "runner_stopped", message, attempt.number)

    async def _collect(self, handle: RunHandle, spec: RunSpec, emitter: Emitter) -> list[str]:
        """Store what the run wrote (also after failure or cancel); returns files over a limit."""
        try:
            await handle.collect_artifacts()
            for name, reason in handle.skipped:  # left out on the way (docker's archive)
                await emitter.log(f"artifact skipped: {name}: {reason}", "warning")
            collected = await collect(
                spec.artifacts_dir,
                self.objects,
                max_file=self.settings.artifact_max_file_bytes,
                max_total=self.settings.artifact_max_total_bytes,
            )
            for stored in collected.stored:
                await emitter.emit(stored)
            for reason in collected.skipped:
                await emitter.log(f"artifact skipped: {reason}", "warning")
            return collected.over_limit
        except (BackendError, ObjectStoreError, OSError) as exc:
            await emitter.log(f"collecting artifacts failed: {exc}", "error")
            return []
        finally:
            with contextlib.suppress(BackendError):
                await handle.remove()
