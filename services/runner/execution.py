"""Executing one run on a backend and turning everything it does into events.

The run's own state decides: a run that is already terminal is skipped; one found ``running``
when its message is delivered again belongs to a runner that is gone (orphaned) and is ended
``failed`` with reason ``runner_lost``. Every path ends the run in exactly one terminal event,
appended with the aggregate's expected sequence so that a racing writer cannot add a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from crewyard.core import run_state as rs
from crewyard.core.crewfile import CrewConfig, memory_bytes
from crewyard.core.events import (
    InvalidEvent,
    Payload,
    RunCanceled,
    RunCompleted,
    RunFailed,
    make_event,
)
from crewyard.core.ids import new_id
from crewyard.eventstore import ConcurrencyConflict, EventStore, StoreUnavailable
from crewyard.lines import PROTO_MARGIN
from crewyard.settings import Settings

from . import disk
from .backends import BackendError, ExitStatus, Limits, RunHandle
from .keepalive import Keepalives
from .output import Budget, Emitter, Outcome, Serve, persist, pump_output

__all__ = ["Budget", "Emitter", "Outcome", "persist"]
log = logging.getLogger("crewyard.runner")

MAX_STACK = 20_000


async def _load(store: EventStore, project: str, run_id: str, patience_s: float = 120.0) -> rs.RunState:
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return rs.fold(run_id, await store.load(project, "run", run_id))
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1.0)


def _replaced(state: rs.RunState, owner: tuple[str, int] | None) -> bool:
    """Is the run past the attempt ``owner`` = (runner id, attempt number)?"""
    return owner is not None and (state.status != rs.RUNNING or (state.runner_id, state.attempt) != owner)


async def finish(
    store: EventStore, project: str, run_id: str, outcome: Payload, *, owner: tuple[str, int] | None = None
) -> bool:
    """Append the terminal event unless the run already ended; True when ours was written.

    With ``owner`` (runner id, attempt) only that attempt may end the run: an attempt that was
    declared lost (and replaced by another) cannot record its outcome over the newer attempt.
    """
    for _ in range(10):
        state = await _load(store, project, run_id)
        if state.is_terminal or _replaced(state, owner):
            return False
        if isinstance(outcome, RunFailed) and state.status == rs.PENDING:
            payload: Payload = outcome  # failing before start (e.g. deployment gone) is legal too
        else:
            try:
                payload = rs.decide_finish(state, outcome)
            except rs.InvalidTransition:
                return False
        event = make_event(payload, project=project, aggregate_id=run_id, event_id=new_id("evt"))
        try:
            store.checked(event)
        except InvalidEvent as exc:  # an output nested deeper than any reader accepts, or too big
            payload = RunFailed(reason="limit", error_message=f"the run's result cannot be stored: {exc}")
            event = make_event(payload, project=project, aggregate_id=run_id, event_id=new_id("evt"))
        try:
            await persist(store, event, 120.0, expected_seq=state.version)
            return True
        except ConcurrencyConflict:
            continue  # someone appended meanwhile (a cancel request, usually): decide again
    return False


async def retry_or_fail(
    store: EventStore,
    project: str,
    run_id: str,
    *,
    reason: str,
    error_message: str,
    max_attempts: int,
    backoff_s: tuple[float, ...],
    owner: tuple[str, int] | None = None,
) -> Payload | None:
    """After an infrastructure failure: append ``run.retrying`` (attempts left) or the terminal
    event; returns what was written, or None when the run had already moved on (with ``owner``:
    past that attempt)."""
    for _ in range(10):
        state = await _load(store, project, run_id)
        if _replaced(state, owner):
            return None
        try:
            payload = rs.decide_retry(
                state,
                reason=reason,
                error_message=error_message,
                max_attempts=max_attempts,
                backoff_s=backoff_s,
            )
        except rs.InvalidTransition:
            return None
        event = make_event(payload, project=project, aggregate_id=run_id, event_id=new_id("evt"))
        try:
            await persist(store, event, 120.0, expected_seq=state.version)
            return payload
        except ConcurrencyConflict:
            continue
    return None


def limits_for(
    config: CrewConfig, *, allow_host_network: bool = False, max_output_bytes: int | None = None
) -> Limits:
    network = config.network
    if network == "host" and not allow_host_network:
        network = "default"  # the host's network is the operator's to give, never the crew's
    return Limits(
        memory_bytes=memory_bytes(config.memory) or 1024 * 1024 * 1024,
        cpus=config.cpus or 1.0,
        pids=config.pids or 256,
        network=network,
        max_output_bytes=max_output_bytes or Limits().max_output_bytes,
    )


def run_budget(settings: Settings, store: EventStore) -> Budget:
    """The budget of every run; the output limit is kept within what the broker accepts."""
    broker = int(getattr(store.nc, "max_payload", 0) or 0)
    room = broker - PROTO_MARGIN if broker > PROTO_MARGIN else settings.max_output_bytes
    if settings.max_output_bytes > room:
        log.warning(
            "CREWYARD_MAX_OUTPUT_BYTES=%d is more than the broker takes in one message (max_payload %d):"
            " outputs are limited to %d bytes; raise max_payload in the NATS configuration for more",
            settings.max_output_bytes,
            broker,
            room,
        )
    return Budget(
        max_events=settings.run_max_events,
        max_event_bytes=settings.run_max_event_bytes,
        max_output=min(settings.max_output_bytes, room),
        max_disk=settings.run_max_disk_bytes,
    )


def run_warnings(
    config: CrewConfig, refused_env: list[str], *, allow_host_network: bool, isolated: bool
) -> list[str]:
    """What the run's log says before the crew starts: settings that were not honoured."""
    warnings = [
        f"environment variable {name} is not applied: the name changes how programs load or start"
        " (or is reserved for the platform), or its value holds a character no process can be"
        " given (NUL); remove it with `crewyard env unset`"
        for name in refused_env
    ]
    if config.network == "host" and not allow_host_network:
        warnings.append(
            'network = "host" is not available to crews on this platform (the operator has not'
            " allowed it): the run gets its own private network instead"
        )
    if not isolated:
        warnings.append("this run is NOT isolated: the process backend runs crews as the runner's own user")
    return warnings


def decide_outcome(
    *,
    outcome: Outcome,
    status: ExitStatus | None,
    canceled: str | None,
    timed_out: float | None,
    started: float,
    limits: Limits,
) -> Payload:
    duration_ms = int((time.monotonic() - started) * 1000)
    if canceled is not None:
        return RunCanceled(reason=canceled, duration_ms=duration_ms)
    if outcome.stopped is not None:
        return RunFailed(reason=outcome.stop_reason, error_message=outcome.stopped, duration_ms=duration_ms)
    if outcome.result is not None:
        # Whatever happens to the process after its result was read (a thread the crew left
        # running may end it while the runtime lingers for its input's end, or the run's time
        # may run out then): the run is done.
        return RunCompleted(output=outcome.result.output, duration_ms=duration_ms)
    if timed_out is not None:
        return RunFailed(
            reason="timeout", error_message=f"Run timed out after {timed_out:g}s", duration_ms=duration_ms
        )
    if outcome.error is not None:
        err = outcome.error
        reason = "out_of_memory" if err.error_type == "MemoryError" else "crew_error"
        message = err.message if reason == "crew_error" else f"Run ran out of memory: {err.message}"
        return RunFailed(
            reason=reason,
            error_message=message,
            error_type=err.error_type,
            stack_trace=(err.traceback or "")[-MAX_STACK:] or None,
            duration_ms=duration_ms,
        )
    if status is not None and status.oom_killed:
        limit = f" ({(limits.memory_bytes or 0) // (1 << 20)} MiB limit)" if limits.memory_bytes else ""
        return RunFailed(
            reason="out_of_memory",
            error_message=f"Run was killed: out of memory{limit}",
            duration_ms=duration_ms,
        )
    code = status.code if status else None
    tail = "\n".join(outcome.stderr_tail[-10:])
    how = f"was killed by signal {status.signal}" if status and status.signal else f"exited with code {code}"
    message = f"crew process {how} before reporting a result"
    return RunFailed(
        reason="crew_error", error_message=message, stack_trace=tail or None, duration_ms=duration_ms
    )


async def supervise(
    handle: RunHandle,
    emitter: Emitter,
    *,
    timeout_s: float,
    cancel: asyncio.Event,
    grace_s: float,
    heartbeat: Callable[[], Awaitable[None]],
    heartbeat_every: float,
    budget: Budget | None = None,
    serve: Serve | None = None,
    keepalives: Keepalives | None = None,
) -> tuple[Outcome, ExitStatus | None, bool, bool]:
    """Run until the crew exits, times out, is canceled or goes over its budget; ``serve``
    answers the runtime's requests (none are served without it); ``keepalives`` tell a runtime
    that takes them that the run is still ours. Returns (outcome, exit, timed_out, canceled)."""
    outcome = Outcome()
    pump = asyncio.create_task(pump_output(handle, emitter, outcome, budget, serve))
    keeper = asyncio.create_task(
        keepalives.keep(handle, lambda: outcome.protocol, outcome.introduced)
        if keepalives
        else asyncio.Event().wait()
    )
    waiter = asyncio.create_task(handle.wait())
    disk_watch = asyncio.create_task(
        disk.watch(handle, budget.max_disk, outcome)
        if budget is not None and budget.max_disk
        else asyncio.Event().wait()
    )
    canceler = asyncio.create_task(cancel.wait())
    aborter = asyncio.create_task(outcome.abort.wait())
    deadline = time.monotonic() + timeout_s
    timed_out = canceled = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            done, _ = await asyncio.wait(
                {waiter, canceler, aborter},
                timeout=min(left, heartbeat_every),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if waiter in done or aborter in done:
                break
            if canceler in done:
                canceled = True
                break
            await heartbeat()
        if outcome.stopped is not None:
            await handle.kill(0)
        elif timed_out or canceled:
            await handle.kill(grace_s)
        status: ExitStatus | None
        try:
            status = await asyncio.wait_for(asyncio.shield(waiter), grace_s + 30)
        except (TimeoutError, BackendError):
            status = None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(pump), 10)
    finally:
        for task in (pump, waiter, canceler, aborter, keeper, disk_watch):
            task.cancel()
    return outcome, status, timed_out, canceled
