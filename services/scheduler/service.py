"""The scheduler service: fires each schedule's planned times, exactly once each, from any
number of instances.

Every instance keeps all schedules folded in memory (brought up to date from the stream every
tick) and, for each schedule with a planned time due, appends ``schedule.fired`` with the
schedule's expected last sequence. Of several instances deciding the same planned time, one
append wins; the others get a conflict, read what won, and see nothing left to do. The fired
event names the run it starts (``run_id``); the run's ``run.queued`` follows it, keyed on that id,
so a crash between the two is repaired by whichever instance looks next (a fired run that does not
exist a few seconds later is queued then — never twice, its append requires a new run).

Time comes from a clock function, so tests can run a schedule's minutes in seconds
(``CREWYARD_SCHEDULER_CLOCK``); the wall clock otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from crewyard.aggregate_index import AggregateIndex
from crewyard.core import run_state as rs
from crewyard.core.events import ScheduleFired, make_event
from crewyard.core.ids import derived_id, new_id
from crewyard.core.schedules import Decision, ScheduleState, decide, due, evolve_schedule
from crewyard.eventstore import ConcurrencyConflict, EventStore, StoreUnavailable
from crewyard.launch import NoDeployment, queue_run, ready_deployment
from crewyard.servicekit import unless_stopped
from crewyard.settings import Settings

log = logging.getLogger("crewyard.scheduler")
READER = "scheduler"
TICK_S = 0.5
#: How long a fired run may take to appear before another instance queues it itself.
REPAIR_AFTER = timedelta(seconds=5)

Clock = Callable[[], datetime]


def clock_from(spec: str) -> Clock:
    """The wall clock, or for ``<epoch>x<speed>`` one that runs ``speed`` times faster from then."""
    if not spec:
        return lambda: datetime.now(UTC)
    origin_text, _, speed_text = spec.partition("x")
    origin, speed = float(origin_text), float(speed_text)
    return lambda: datetime.fromtimestamp(origin + (time.time() - origin) * speed, UTC)


class Scheduler:
    def __init__(self, settings: Settings, store: EventStore, clock: Clock | None = None) -> None:
        self.store = store
        self.clock = clock or clock_from(settings.scheduler_clock)
        self.schedules: AggregateIndex[ScheduleState] = AggregateIndex(
            store, "schedule", lambda i: ScheduleState(schedule_id=i), evolve_schedule, reader=READER
        )
        #: schedule id → (its version, its next planned time) when it last had nothing to do: it
        #: is not looked at again before then unless it changed (a step walks its cron).
        self._asleep: dict[str, tuple[int, datetime]] = {}
        #: schedule id → its last fired run known to exist.
        self._verified: dict[str, str] = {}

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await unless_stopped(self.tick(), stop)  # a tick a crash may end (it resumes)
            except StoreUnavailable as exc:
                log.warning("event store unavailable (%s); retrying", exc)
            except Exception:
                log.exception("scheduler tick failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), TICK_S)

    async def tick(self) -> None:
        await self.schedules.refresh()
        now = self.clock()
        for state in list(self.schedules.items.values()):
            if not state.active:  # paused or deleted: what was noted of it is of no more use
                self._asleep.pop(state.schedule_id, None)
                self._verified.pop(state.schedule_id, None)
                continue
            asleep = self._asleep.get(state.schedule_id)
            if asleep is not None and asleep[0] == state.version and now < asleep[1]:
                continue
            try:
                await self._step(state)
            except StoreUnavailable:
                raise
            except Exception:  # one schedule's fault must not hold up every other one
                log.exception("schedule %s: its step failed; the others go on", state.schedule_id)

    async def _step(self, state: ScheduleState) -> None:
        if not await self._previous_run_queued(state):
            return
        if state.overlap == "queue" and await self._running(state.project, state.last_run_id):
            return  # what is due waits for the run's end: nothing is walked meanwhile
        # The walk from the schedule's horizon to now is as long as the gap (a day of a minutely
        # cron: 1,440 steps), so a step walks once, in a thread (the platform's services share
        # one event loop), and fires what it found in order without walking again.
        now = self.clock()
        found = await asyncio.to_thread(due, state, now)
        for _ in range(state.catch_up_limit + 2):
            if not await self._previous_run_queued(state):
                return
            decision = decide(state, now, previous_run_active=False, found=found)
            if decision.action == "wait":
                if decision.wake_at is not None:
                    self._asleep[state.schedule_id] = (state.version, decision.wake_at)
                return
            if state.overlap != "allow" and await self._running(state.project, state.last_run_id):
                decision = decide(state, now, previous_run_active=True, found=found)
                if decision.action == "wait":
                    return
            if await self._fire(state, decision):
                assert decision.planned_at is not None
                found = ([t for t in found[0] if t > decision.planned_at], found[1])
            else:  # someone else wrote first: look again
                await self.schedules.refresh()
                now = self.clock()
                found = await asyncio.to_thread(due, state, now)

    async def _fire(self, state: ScheduleState, decision: Decision) -> bool:
        """Append the planned time's ``schedule.fired`` (then queue its run); False on a conflict."""
        assert decision.planned_at is not None
        planned = decision.planned_at
        if decision.action == "skip":
            payload = ScheduleFired(
                planned_at=planned, outcome="skipped", reason=decision.reason, missed=decision.missed
            )
            deployment = None
        else:
            try:
                deployment = await ready_deployment(
                    self.store, state.project, state.deployment_id, state.environment
                )
                payload = ScheduleFired(
                    planned_at=planned, outcome="queued", run_id=new_id("run"), missed=decision.missed
                )
            except NoDeployment as exc:
                deployment = None
                payload = ScheduleFired(
                    planned_at=planned, outcome="failed", reason=str(exc), missed=decision.missed
                )
        # The id names this writer's run too: the store takes an unanswered append found on the
        # aggregate under its id as landed, so an id every instance would write alike let one
        # instance take another's firing of the same time for its own and queue a second run.
        event = make_event(
            payload,
            project=state.project,
            aggregate_id=state.schedule_id,
            event_id=derived_id(
                "evt",
                int(planned.timestamp() * 1000),
                "schedule.fired",
                state.schedule_id,
                planned.isoformat(),
                payload.run_id or payload.outcome,
            ),
        )
        try:
            await self.store.append(event, expected_seq=state.version)
        except ConcurrencyConflict:
            return False
        if payload.run_id and deployment:
            await queue_run(
                self.store,
                project=state.project,
                run_id=payload.run_id,
                deployment_id=deployment.deployment_id,
                input=state.input,
                correlation_id=state.schedule_id,
                environment=deployment.environment,
                version_number=deployment.number,
            )
            self._verified[state.schedule_id] = payload.run_id
            log.info("schedule %s fired %s: run %s", state.schedule_id, planned.isoformat(), payload.run_id)
        await self.schedules.refresh()
        return True

    async def _lifecycle(self, project: str, run_id: str) -> rs.RunState:
        return rs.fold(run_id, await self.store.load(project, "run", run_id, types=rs.LIFECYCLE))

    async def _running(self, project: str, run_id: str | None) -> bool:
        if run_id is None:
            return False
        run = await self._lifecycle(project, run_id)
        return run.exists and not run.is_terminal

    async def _previous_run_queued(self, state: ScheduleState) -> bool:
        """Make sure the run the last firing started exists (its writer may have died between the
        two appends); False while it is too early to tell."""
        run_id = state.last_run_id
        if run_id is None or self._verified.get(state.schedule_id) == run_id:
            return True
        if (await self._lifecycle(state.project, run_id)).exists:
            self._verified[state.schedule_id] = run_id
            return True
        fired_at = state.last_fired_at or datetime.now(UTC)
        if datetime.now(UTC) - fired_at < REPAIR_AFTER:
            return False
        try:
            deployment = await ready_deployment(
                self.store, state.project, state.deployment_id, state.environment
            )
        except NoDeployment as exc:
            log.warning("schedule %s: cannot start run %s: %s", state.schedule_id, run_id, exc)
            self._verified[state.schedule_id] = run_id  # nothing to start it on; move on
            return True
        await queue_run(
            self.store,
            project=state.project,
            run_id=run_id,
            deployment_id=deployment.deployment_id,
            input=state.input,
            correlation_id=state.schedule_id,
            environment=deployment.environment,
            version_number=deployment.number,
        )
        log.warning("schedule %s: started run %s, which its firing left unqueued", state.schedule_id, run_id)
        self._verified[state.schedule_id] = run_id
        return True
