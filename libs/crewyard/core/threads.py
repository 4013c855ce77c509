"""The thread lifecycle as pure code: ``idle → busy → idle | error | interrupted``, one run at a time.

:func:`fold` takes a thread's events — its whole history, or only its latest event of each type
(what the event store's last-per-subject read returns): the state depends only on the latest
lifecycle event, so both give the same answer, and the second costs one read however long the
thread is. ``version`` is the last sequence seen, the expected sequence of the next write.

Starting a run touches two aggregates, in this order: the thread (``thread.run_accepted``, with
the thread's expected sequence: of many simultaneous starts exactly one is accepted), then the
run (``run.queued``). Every crash point settles by itself: a thread busy with a run that never
got queued, or whose run ended without the thread hearing of it, is ended by whoever looks next
(:func:`decide_settle`): the runner that ran it, the gateway on the next start, the runner's
thread keeper in any case.
"""

from __future__ import annotations

from typing import Any

import msgspec

from crewyard.errors import CrewyardError

from .events import (
    Recorded,
    ThreadCheckpointed,
    ThreadCreated,
    ThreadDeleted,
    ThreadRunAccepted,
    ThreadRunEnded,
    ThreadStatus,
    Unreadable,
)

IDLE: ThreadStatus = "idle"
BUSY: ThreadStatus = "busy"
ERROR: ThreadStatus = "error"
INTERRUPTED: ThreadStatus = "interrupted"
STATUSES = (IDLE, BUSY, ERROR, INTERRUPTED)


class ThreadError(CrewyardError):
    """A thread request that cannot be met; ``kind``: not_found or conflict (like versions)."""

    kind = code = "conflict"


class ThreadNotFound(ThreadError):
    kind = code = "not_found"


class ThreadBusy(ThreadError):
    """The thread runs another run (``run_id``); one at a time."""

    code = "thread_busy"

    def __init__(self, message: str, run_id: str | None) -> None:
        super().__init__(message)
        self.run_id = run_id


class ThreadState(msgspec.Struct, kw_only=True):
    thread_id: str
    project: str = ""
    name: str = "default"
    deployment_id: str | None = None
    status: str = ""  # "" until thread.created
    deleted: bool = False
    active_run_id: str | None = None
    #: The status the thread had before its active run (what it returns to if that run never ran).
    previous_status: str = IDLE
    version: int = 0
    #: The latest checkpoint: its stream sequence and the run that wrote it (None: the copy's own).
    checkpoint_seq: int = 0
    checkpoint_run_id: str | None = None
    checkpoint_interrupted: bool = False
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)

    @property
    def exists(self) -> bool:
        return self.status != "" and not self.deleted


def fold(thread_id: str, records: list[Recorded]) -> ThreadState:
    state = ThreadState(thread_id=thread_id)
    for rec in sorted(records, key=lambda r: r.seq):
        data = rec.event.data
        state.version = max(state.version, rec.seq)
        if isinstance(data, Unreadable):
            continue
        state.project = rec.event.project or state.project
        if isinstance(data, ThreadCreated):
            state.name, state.deployment_id, state.metadata = data.name, data.deployment_id, data.metadata
            state.status = INTERRUPTED if data.interrupted else IDLE
            if data.checkpoint_id is not None:
                state.checkpoint_seq, state.checkpoint_run_id = rec.seq, None
                state.checkpoint_interrupted = data.interrupted
        elif isinstance(data, ThreadRunAccepted):
            state.status, state.active_run_id, state.previous_status = BUSY, data.run_id, data.previous_status
        elif isinstance(data, ThreadRunEnded):
            if state.active_run_id in (None, data.run_id):
                state.status, state.active_run_id = data.status, None
        elif isinstance(data, ThreadCheckpointed):
            state.checkpoint_seq, state.checkpoint_run_id = rec.seq, data.run_id
            state.checkpoint_interrupted = data.interrupted
        elif isinstance(data, ThreadDeleted):
            state.deleted = True
    return state


def check_exists(state: ThreadState) -> None:
    if not state.exists:
        raise ThreadNotFound(f"thread {state.thread_id} not found")


def decide_run(state: ThreadState, run_id: str) -> ThreadRunAccepted:
    """Accept ``run_id`` on an idle, failed or interrupted thread; a busy one refuses."""
    check_exists(state)
    if state.status == BUSY:
        raise ThreadBusy(
            f"thread {state.thread_id} is busy with run {state.active_run_id}", state.active_run_id
        )
    previous: ThreadStatus = state.status  # type: ignore[assignment]
    return ThreadRunAccepted(run_id=run_id, previous_status=previous)


def status_after(run_status: str, checkpoint_of_run_interrupted: bool) -> ThreadStatus:
    """What a thread is after its run ended with ``run_status``: a succeeded run leaves it idle,
    or interrupted when the run's checkpoint waits for input; anything else leaves it in error
    (its state stays at the last checkpoint: a later run may retry from there)."""
    if run_status == "succeeded":
        return INTERRUPTED if checkpoint_of_run_interrupted else IDLE
    return ERROR


def decide_settle(
    state: ThreadState, run_id: str, run_status: str | None, *, gave_up: bool = False
) -> ThreadRunEnded | None:
    """End the thread's ``run_id`` once that run is over (``run_status`` terminal), or when it
    will never run (``gave_up``: its ``run.queued`` never came): the thread goes back to what it
    was. None while there is nothing to do (another run, or the run still going)."""
    if not state.exists or state.status != BUSY or state.active_run_id != run_id:
        return None
    if run_status in ("succeeded", "failed", "canceled"):
        interrupted = state.checkpoint_run_id == run_id and state.checkpoint_interrupted
        return ThreadRunEnded(
            run_id=run_id, status=status_after(run_status, interrupted), reason=f"run {run_status}"
        )
    if run_status is None and gave_up:
        previous: ThreadStatus = state.previous_status if state.previous_status != BUSY else IDLE  # type: ignore[assignment]
        return ThreadRunEnded(run_id=run_id, status=previous, reason="the run was never queued")
    return None


def decide_delete(state: ThreadState) -> ThreadDeleted:
    check_exists(state)
    if state.status == BUSY:
        raise ThreadBusy(
            f"thread {state.thread_id} is busy with run {state.active_run_id}", state.active_run_id
        )
    return ThreadDeleted()
