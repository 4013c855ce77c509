"""One attempt of a run, from its claim to its outcome: the run's slot and lease are taken,
``run.started`` is appended, the crew starts (in a warm sandbox or cold), its output is
supervised, its artifacts collected and exactly one outcome recorded, and then its sandbox is
removed (its teardown is nobody's wait) — or, if the attempt was fenced or handed back, the
sandbox is removed, no outcome recorded, and the run is retried. The pieces it is made of (output, outcome,
retries) are in ``execution.py``; taking runs off the queue is ``service.py``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from pathlib import Path

import msgspec

from crewyard import metrics
from crewyard.core import envnames
from crewyard.core import run_state as rs
from crewyard.core.crewfile import CrewConfig
from crewyard.core.deployment_state import READY, DeploymentState, fold_deployment
from crewyard.core.events import Payload, RunCanceled, RunCompleted, RunFailed, RunRetrying, make_event
from crewyard.core.ids import new_id
from crewyard.environments import ArchiveCorrupt, BuildFailed
from crewyard.eventstore import EventStore, WorkItem
from crewyard.objects import ObjectStore, ObjectStoreError
from crewyard.secrets import SecretError
from crewyard.settings import Settings

from . import specs
from .artifacts import MAX_REPORTED, collect, report, shown
from .attempts import Attempt, still_ours
from .backends import BackendError, ExecutionBackend, RunHandle, RunSpec
from .execution import Emitter, decide_outcome, finish, retry_or_fail, run_warnings, supervise
from .keepalive import Keepalives, as_watchdog_ends
from .liveness import Liveness
from .output import Budget
from .pools import PoolKey, Pools, Renewal
from .protocol import ThreadStart
from .session import RunSession
from .slots import Slots, run_limits
from .specs import Prepared, Specs, Warmth

_STATUS = {RunCompleted: "succeeded", RunFailed: "failed", RunCanceled: "canceled"}
#: A run waiting for a concurrency slot comes back after this, times one more than the rounds
#: of runs ahead of it in line (``slots.Turn``), up to ``WAITING_FOR_SLOT_MAX``: the next in line
#: looks every second, the thousandth and those behind it every minute.
WAITING_FOR_SLOT_DELAY = 1.0
WAITING_FOR_SLOT_MAX = 60.0


class Executor:
    """Executes the attempts of one runner (``runner_id``); ``active`` is the runner's map of the
    attempts it executes now, which its cancel listener and fencer read."""

    def __init__(
        self,
        settings: Settings,
        store: EventStore,
        objects: ObjectStore,
        backend: ExecutionBackend,
        *,
        runner_id: str,
        work_dir: Path,
        liveness: Liveness,
        slots: Slots,
        specs: Specs,
        pools: Pools,
        budget: Budget,
        active: dict[str, Attempt],
    ) -> None:
        self.settings = settings
        self.store = store
        self.objects = objects
        self.backend = backend
        self.runner_id = runner_id
        self.work_dir = work_dir
        self.liveness = liveness
        self.slots = slots
        self.specs = specs
        self.pools = pools
        self.budget = budget
        self.active = active

    async def retry_or_fail(
        self,
        item: WorkItem,
        state: rs.RunState,
        reason: str,
        message: str,
        attempt: int | None = None,
        *,
        owner: tuple[str, int] | None = None,
    ) -> None:
        """After an infrastructure failure; with ``attempt``, only while that attempt of ours is
        the run's current one (with ``owner``, (runner id, attempt), that attempt of anyone's)."""
        written = await retry_or_fail(
            self.store,
            state.project,
            state.run_id,
            reason=reason,
            error_message=message,
            max_attempts=self.settings.retry_max_attempts,
            backoff_s=self.settings.retry_backoff,
            owner=(self.runner_id, attempt) if attempt else owner,
        )
        if isinstance(written, RunRetrying):
            await item.nak(delay=written.delay_s)  # the same message brings the run back
        elif written is None and not await self.is_over(state.run_id):
            await item.nak(delay=1.0)  # it moved on without us (a newer attempt): leave it the message
        else:
            await item.ack()

    async def is_over(self, run_id: str) -> bool:
        return rs.fold(run_id, await self.store.load_any("run", run_id, types=rs.LIFECYCLE)).is_terminal

    async def execute(self, item: WorkItem, state: rs.RunState) -> None:
        """One execution of a pending run. The run's message may reach another execution of it
        meanwhile (a set-up longer than ``ack_wait``): whatever this one takes (a slot reference,
        its lease claim, its place in ``active``) it gives back itself, never the other's, and
        only one of them wins ``run.started``."""
        run_id, project = state.run_id, state.project
        await item.in_progress()  # the set-up below reads the store a few times: keep the message
        # A ready deployment stays as it is (ready is its last state): any replica that says so
        # is right. ``current`` only for a "not ready": a replica behind the run's POST must not
        # fail a run of a deployment made ready a moment before.
        history = await self.store.load(project, "deployment", state.deployment_id)
        dep = fold_deployment(state.deployment_id, history)
        if dep.status != READY:
            history = await self.store.load(project, "deployment", state.deployment_id, current=True)
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
        # The project's limits as the leader has them when the run is first seen (a replica behind
        # the run's POST must not give it a limit older than the request); while it waits for a
        # slot (delivered again every second) a replica's are good enough: not a leader's read
        # per waiting run and second.
        first = item.deliveries <= 1
        limits = await run_limits(self.store, project, state.deployment_id, config, current=first)
        if limits and not (turn := await self.slots.acquire(run_id, limits, self.is_over)):
            # It stays pending, in line for a slot.
            await item.nak(delay=min(WAITING_FOR_SLOT_DELAY * (1 + turn.rounds), WAITING_FOR_SLOT_MAX))
            return
        await item.in_progress()
        attempt = Attempt(run_id, project)
        self.active.setdefault(run_id, attempt)  # one execution per run and runner: see service.py
        metrics.RUNS_ACTIVE.inc()
        work = self.work_dir / run_id
        claimed = False
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
            try:
                forked = sandbox is None and self.pools.can_fork(key, fingerprint)
                started = rs.decide_start(
                    state,
                    runner_id=self.runner_id,
                    backend=self.backend.name,
                    isolated=self.backend.isolated,
                    entrypoint=config.entrypoint,
                    warm=sandbox is not None or forked,
                )
                attempt.number = started.attempt
                event = make_event(started, project=project, aggregate_id=run_id, event_id=new_id("evt"))
                await item.in_progress()
                await self.liveness.claim(run_id, started.attempt)  # before run.started: see liveness.py
                claimed = True
                attempt.started_seq = await self.store.append(event, expected_seq=state.version)
                if state.created_at is not None:
                    waited = (event.time - state.created_at).total_seconds()
                    metrics.RUN_START_LATENCY.labels(self.backend.name).observe(max(waited, 0.0))
                warm = Warmth(key, fingerprint, sandbox, forked)
                prepared = Prepared(env, refused, secrets)
                await self._run_started(item, state, dep, config, attempt, prepared, warm)
            finally:
                if sandbox is not None and not sandbox.taken:  # never given the run's start (a
                    self.pools.give_back(key, sandbox)  # failure, a refusal): as good as before
        finally:  # only what this execution took
            if self.active.get(run_id) is attempt:
                del self.active[run_id]
            metrics.RUNS_ACTIVE.dec()
            if claimed:
                await self.liveness.release(run_id, attempt.number)
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
    ) -> tuple[RunSpec, RunHandle, str]:
        """The run's warm sandbox, or a cold start (and which: warm, forked or cold); either way
        its pool keeps the next one ready."""
        handle: RunHandle | None = None
        kind = "warm"
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
            started = msgspec.structs.replace(spec, thread=thread)
            if warm.forked:
                handle, kind = await self.pools.fork(warm.key, warm.fingerprint, started), "forked"
            if handle is None:
                handle, kind = await self.backend.start(started), "cold"
        metrics.WARM_STARTS.labels(kind, self.backend.name).inc()
        low, high = self.specs.pool_size(config)
        renewal = Renewal(warm.key, spec, warm.fingerprint)
        self.pools.offer(renewal, project=state.project, name=dep.name, low=low, high=high)
        return spec, handle, kind

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
                # (a warm sandbox it took goes back to its pool: see execute)
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
            spec, handle, kind = await self._start(state, dep, config, prepared.env, warm, session.thread)
            if warm.forked and kind == "cold":  # run.started said warm: the log says otherwise
                await emitter.log(
                    "the deployment's fork server could not fork this run: it started cold", "warning"
                )
        except BuildFailed as exc:  # the crew's dependencies: not worth retrying
            await finish(self.store, project, run_id, RunFailed(reason="crew_error", error_message=str(exc)))
            await item.ack()
            return
        except (BackendError, ObjectStoreError, OSError, ArchiveCorrupt) as exc:
            await emitter.log(f"could not start the run: {exc}", "error")
            await emitter.flush()
            await self.retry_or_fail(
                item, state, "infrastructure", f"Could not start the run: {exc}", attempt.number
            )
            return
        await attempt.started(handle)

        async def heartbeat() -> None:
            await item.in_progress()
            if not await still_ours(self.store, attempt, self.runner_id):
                await attempt.stop_now()

        timeout = state.timeout_s or config.timeout_s or self.settings.default_timeout_s
        keepalives = Keepalives(self.liveness)
        try:
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
                keepalives=keepalives,
            )
        except BaseException:  # the store went away, or a bug: the message is handed back, and
            # the sandbox (its processes, its network helper) must not outlive this attempt
            with contextlib.suppress(BackendError):
                await handle.remove()
            raise
        # A crew that ended as its watchdog ends one, without a word, after a deadline we gave
        # passed: our runner was stalled past its lease, as if it had fenced the attempt.
        watched_out = (
            keepalives.lapsed()
            and outcome.result is None
            and outcome.error is None
            and outcome.stopped is None
            and not (timed_out or canceled)
            and as_watchdog_ends(status)
        )
        if attempt.fenced.is_set() or watched_out:
            await self._fenced(item, state, handle, emitter, attempt, watched_out=watched_out)
            return
        if attempt.handed_back:
            await self._handed_back(item, state, handle, emitter, attempt)
            return
        try:
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
                payload = RunFailed(
                    reason="limit", error_message="Artifact limit exceeded: " + "; ".join(over)
                )
            await self._record(item, state, attempt, session, emitter, payload, t0)
        finally:  # after the outcome is recorded: a sandbox's teardown is nobody's wait
            with contextlib.suppress(BackendError):
                await handle.remove()

    async def _record(
        self,
        item: WorkItem,
        state: rs.RunState,
        attempt: Attempt,
        session: RunSession,
        emitter: Emitter,
        payload: Payload,
        t0: float,
    ) -> None:
        """The run's outcome, after its events: appended if the attempt is still the run's."""
        payload = await session.conclude(payload)  # a thread run's checkpoint, before its end
        await emitter.flush()
        written = await finish(
            self.store, state.project, state.run_id, payload, owner=(self.runner_id, attempt.number)
        )
        if written:
            ended = _STATUS.get(type(payload), "failed")
            metrics.RUNS_FINISHED.labels(ended, self.backend.name).inc()
            metrics.RUN_DURATION.labels(ended, self.backend.name).observe(time.monotonic() - t0)
        if written or await self.is_over(state.run_id):
            await session.ended()
            await item.ack()
        else:
            # Someone declared this attempt lost while it ran (and queued the run again): the
            # outcome cannot be recorded, so leave the message for the run's next attempt.
            await item.nak(delay=1.0)

    async def _fenced(
        self,
        item: WorkItem,
        state: rs.RunState,
        handle: RunHandle,
        emitter: Emitter,
        attempt: Attempt,
        *,
        watched_out: bool = False,
    ) -> None:
        """The attempt was killed as no longer ours (by us, or by its runtime's watchdog while we
        were stalled): it records no outcome; if it is still the run's current attempt (our lease
        ran out), the run is retried."""
        with contextlib.suppress(BackendError):
            await handle.remove()
        await emitter.flush()
        silent, lease = self.liveness.silent_for(), self.liveness.lease_s
        message = f"Runner {self.runner_id} lost its lease (no event store for {silent:.0f}s of {lease:g}s)"
        if watched_out and not attempt.fenced.is_set():
            message = (
                f"Runner {self.runner_id} was silent past its lease ({lease:g}s):"
                " the crew's runtime stopped it, as the runner would have"
            )
        await self.retry_or_fail(item, state, "runner_lost", message, attempt.number)

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
        await self.retry_or_fail(item, state, "runner_stopped", message, attempt.number)

    async def _collect(self, handle: RunHandle, spec: RunSpec, emitter: Emitter) -> list[str]:
        """Store what the run wrote (also after failure or cancel); returns files over a limit."""
        try:
            folder = await handle.collect_artifacts()
            left_out = handle.skipped  # on the way out of a container (docker's archive)
            early = [f"{shown(name)}: {reason}" for name, reason in left_out[:MAX_REPORTED]]
            for line in report(early, len(left_out) - len(early), "entries left out"):
                await emitter.log(f"artifact skipped: {line}", "warning")
            collected = await collect(
                folder,
                self.objects,
                max_file=self.settings.artifact_max_file_bytes,
                max_total=self.settings.artifact_max_total_bytes,
                staging=spec.work_dir,
            )
            for stored in collected.stored:
                await emitter.emit(stored)
            for reason in collected.skipped:
                await emitter.log(f"artifact skipped: {reason}", "warning")
            return collected.over_limit
        except (BackendError, ObjectStoreError, OSError) as exc:
            await emitter.log(f"collecting artifacts failed: {exc}", "error")
            return []
