"""The attempts this runner is executing, and how they are stopped early.

A cancel request (``run.cancel_requested``, followed from the stream by every runner) ends an
attempt with its grace period, and so does a runner that is stopping (SIGTERM) once its drain
time is up: that attempt is handed back — the run is retried by another runner, an
infrastructure event, never recorded as canceled. Two more things end one, at once: our lease
ran out (we could not reach the broker for ``lease - interval``: someone may soon take the run
over) and the run's own events say it moved on without us (another runner declared the attempt
lost and started a new one). Either way the crew is killed at once and the attempt records no
outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from crewyard.core import run_state as rs
from crewyard.core import subjects
from crewyard.core.events import InvalidEvent
from crewyard.eventstore import EventStore, StoreUnavailable, set_aside

from .backends import BackendError, RunHandle
from .liveness import Liveness

log = logging.getLogger("crewyard.runner")


class Attempt:
    def __init__(self, run_id: str, project: str) -> None:
        self.run_id, self.project = run_id, project
        self.number = 0  # the attempt's number in run.started
        self.started_seq = 0  # stream sequence of our run.started
        self.cancel = asyncio.Event()  # a user asked (or hand_back): end it with its grace period
        self.fenced = asyncio.Event()  # not ours any more: killed at once, records nothing
        self.handed_back = False  # our runner is stopping: the run goes to another runner
        self._handle: RunHandle | None = None

    def hand_back(self) -> None:
        """End the attempt with its grace period so that another runner retries the run. A
        user's cancel that came first still wins (the attempt ends as canceled)."""
        if not self.cancel.is_set():
            self.handed_back = True
            self.cancel.set()

    async def started(self, handle: RunHandle) -> None:
        self._handle = handle
        if self.fenced.is_set():  # fenced while the crew was starting
            await self.stop_now()

    async def stop_now(self) -> None:
        """Fence the attempt: kill the crew without a grace period (its supervisor sees it end)."""
        self.fenced.set()
        if self._handle is not None:
            with contextlib.suppress(BackendError):
                await self._handle.kill(0)


async def still_ours(store: EventStore, attempt: Attempt, runner_id: str) -> bool:
    """False once the run's events show it moved on from this attempt."""
    if not attempt.started_seq:
        return True
    try:
        state = rs.fold(
            attempt.run_id, await store.load(attempt.project, "run", attempt.run_id, types=rs.LIFECYCLE)
        )
    except StoreUnavailable:
        return True  # cannot tell: the lease decides (see fence_when_silent)
    if state.version < attempt.started_seq:
        return True  # a lagging replica answered: it has not even seen our start
    return state.status == rs.RUNNING and (state.runner_id, state.attempt) == (runner_id, attempt.number)


async def fence_when_silent(liveness: Liveness, active: dict[str, Attempt]) -> None:
    """Kill every attempt once our lease is about to run out (until cancelled)."""
    while True:
        await asyncio.sleep(min(0.5, liveness.interval_s / 2))
        if active and liveness.silent_for() >= liveness.fence_after_s:
            doomed = [a for a in active.values() if not a.fenced.is_set()]
            for attempt in doomed:
                log.warning(
                    "no lease renewal for %.0fs: stopping run %s before another runner may take it",
                    liveness.silent_for(),
                    attempt.run_id,
                )
            await asyncio.gather(*(attempt.stop_now() for attempt in doomed))


async def follow_cancels(store: EventStore, active: dict[str, Attempt], stop: asyncio.Event) -> None:
    """Signal our attempts whose run someone asked to cancel (until ``stop``)."""
    filt = subjects.type_filter("run.cancel_requested", "run", store.prefix)
    while not stop.is_set():
        try:
            start = await store.last_seq() + 1
            async with store.follow(filt, start_seq=start) as queue:
                while not stop.is_set():
                    raw = await queue.get()
                    try:
                        run_id = raw.decode(store.prefix).event.aggregate_id
                    except InvalidEvent as exc:  # not a real cancel request: never stop a run for it
                        set_aside("runner cancels", raw.seq, raw.subject, exc)
                        continue
                    attempt = active.get(run_id)
                    if attempt is not None:
                        attempt.cancel.set()
        except StoreUnavailable:
            await asyncio.sleep(1.0)
