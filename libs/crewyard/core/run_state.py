"""The run lifecycle as pure code: ``pending → running → succeeded | failed | canceled``.

``evolve`` folds events into a :class:`RunState`; the ``decide_*`` functions take a state and a
command and return the payloads to append, or raise :class:`InvalidTransition`. Writers append
with the state's ``version`` (the stream sequence of its last event) as the expected sequence, so
two writers racing on one run cannot both move it to a terminal state.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from crewyard.errors import CrewyardError

from .events import (
    Event,
    Payload,
    Recorded,
    RunCanceled,
    RunCancelRequested,
    RunCompleted,
    RunFailed,
    RunQueued,
    RunRetrying,
    RunStarted,
    Unreadable,
)

PENDING, RUNNING, SUCCEEDED, FAILED, CANCELED = "pending", "running", "succeeded", "failed", "canceled"
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELED})
#: The types a run's own events have (``load(..., types=LIFECYCLE)``): its fold reads only these,
#: never what its crew emitted.
LIFECYCLE = "run.*"


class InvalidTransition(CrewyardError):
    """The command is not legal in the run's current state."""

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message)
        self.status = status


class RunState(msgspec.Struct, kw_only=True):
    run_id: str
    project: str = ""
    status: str = ""  # "" until run.queued has been seen
    version: int = 0
    deployment_id: str = ""
    environment: str = "production"
    thread_id: str | None = None
    command: dict[str, Any] | None = None
    input: dict[str, Any] = msgspec.field(default_factory=dict)
    timeout_s: float | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    attempt: int = 0
    runner_id: str | None = None
    cancel_requested: bool = False
    output: Any = None
    error_message: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None

    @property
    def exists(self) -> bool:
        return self.status != ""

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL


def evolve(state: RunState, recorded: Recorded) -> RunState:
    """Apply one stored event to the state (in place, returned for chaining)."""
    event: Event = recorded.event
    data = event.data
    state.version = recorded.seq
    if isinstance(data, Unreadable):
        return state  # its place counts (expected sequence), its content is unknown
    state.project = event.project
    if isinstance(data, RunQueued):
        state.status = PENDING
        state.deployment_id = data.deployment_id
        state.environment = data.environment
        state.thread_id, state.command = data.thread_id, data.command
        state.input = data.input
        state.timeout_s = data.timeout_s
        state.created_at = event.time
        state.idempotency_key = data.idempotency_key
        state.request_hash = data.request_hash
    elif isinstance(data, RunStarted):
        state.status = RUNNING
        state.started_at = state.started_at or event.time
        state.attempt = data.attempt
        state.runner_id = data.runner_id
    elif isinstance(data, RunRetrying):
        state.status = PENDING
        state.runner_id = None
    elif isinstance(data, RunCancelRequested):
        state.cancel_requested = True
    elif isinstance(data, RunCompleted):
        state.status, state.output, state.completed_at = SUCCEEDED, data.output, event.time
    elif isinstance(data, RunFailed):
        state.status, state.error_message, state.completed_at = FAILED, data.error_message, event.time
    elif isinstance(data, RunCanceled):
        state.status, state.completed_at = CANCELED, event.time
    return state


def fold(run_id: str, history: list[Recorded]) -> RunState:
    state = RunState(run_id=run_id)
    for recorded in history:
        evolve(state, recorded)
    return state


def decide_start(
    state: RunState, *, runner_id: str, backend: str, isolated: bool, entrypoint: str, warm: bool = False
) -> RunStarted:
    if state.status != PENDING:
        raise InvalidTransition(f"Cannot start run with status: {state.status or 'unknown'}", state.status)
    return RunStarted(
        runner_id=runner_id,
        backend=backend,
        isolated=isolated,
        attempt=state.attempt + 1,
        entrypoint=entrypoint,
        warm=warm,
    )


def decide_cancel(state: RunState, *, reason: str = "requested") -> Payload:
    """A pending run is canceled outright; a running one is asked to stop (the runner ends it)."""
    if state.status == PENDING:
        return RunCanceled(reason=reason)
    if state.status == RUNNING:
        if state.cancel_requested:
            raise InvalidTransition("Cancel already requested", state.status)
        return RunCancelRequested(reason=reason)
    raise InvalidTransition(f"Cannot cancel run with status: {state.status or 'unknown'}", state.status)


def decide_retry(
    state: RunState, *, reason: str, error_message: str, max_attempts: int, backoff_s: tuple[float, ...]
) -> Payload:
    """After an infrastructure failure: try again while attempts remain, else fail the run.

    Crew errors never come here: only failures that are not the crew's doing (a runner lost,
    an engine that could not start the run) are retried.
    """
    if state.status not in (PENDING, RUNNING):
        raise InvalidTransition(f"Cannot retry run with status: {state.status or 'unknown'}", state.status)
    attempts = max(state.attempt, 1)
    if state.cancel_requested:
        return RunCanceled(reason="canceled while its attempt failed")
    if attempts >= max_attempts:
        return RunFailed(reason=reason, error_message=f"{error_message} (after {attempts} attempts)")
    delay = backoff_s[min(attempts - 1, len(backoff_s) - 1)] if backoff_s else 0.0
    return RunRetrying(attempt=attempts, reason=reason, error_message=error_message, delay_s=delay)


def decide_finish(state: RunState, outcome: Payload) -> Payload:
    """Only a running run ends through its runner; anything else is a lost race."""
    if not isinstance(outcome, RunCompleted | RunFailed | RunCanceled):
        raise TypeError(f"not a terminal payload: {outcome!r}")
    if state.status != RUNNING:
        raise InvalidTransition(f"Cannot finish run with status: {state.status or 'unknown'}", state.status)
    return outcome
