"""Executing one run on a backend and turning everything it does into events.

The run's own state decides: a run that is already terminal is skipped; one found ``running``
when its message is delivered again belongs to a runner that is gone (orphaned) and is ended
``failed`` with reason ``runner_lost``. Every path ends the run in exactly one terminal event,
appended with the aggregate's expected sequence so that a racing writer cannot add a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec

from crewyard.core import run_state as rs
from crewyard.core.crewfile import CrewConfig, memory_bytes
from crewyard.core.events import (
    CREW_EMITTABLE,
    PAYLOAD_TYPES,
    Event,
    InvalidEvent,
    Log,
    Payload,
    RunCanceled,
    RunCompleted,
    RunFailed,
    encode_checked,
    make_event,
)
from crewyard.core.ids import new_id
from crewyard.eventstore import ConcurrencyConflict, EventStore, StoreUnavailable
from crewyard.secrets import redact

from .backends import BackendError, ExitStatus, Limits, RunHandle
from .protocol import (
    VERSION,
    CrewError,
    CrewEvent,
    Hello,
    LogLine,
    Message,
    Ready,
    Request,
    Result,
    decode_line,
    encode,
    refuse,
)

MAX_STACK = 20_000


class Emitter:
    """Chatty run events, pipelined; the terminal event goes through :func:`finish`.

    While the broker is away (restarting, failing over) events are kept and sent again once it
    answers; the server's de-duplication by event id makes a resend that had landed harmless.
    """

    RESEND_FOR_S = 120.0
    ACK_WAIT_S = 10.0

    def __init__(self, store: EventStore, project: str, run_id: str, secrets: list[str]) -> None:
        self.store, self.project, self.run_id, self.secrets = store, project, run_id, secrets
        self._pending: list[tuple[Event, asyncio.Future[Any] | None]] = []

    async def emit(self, payload: Payload) -> None:
        event = make_event(payload, project=self.project, aggregate_id=self.run_id, event_id=new_id("evt"))
        try:
            future: asyncio.Future[Any] | None = await self.store.append_nowait(event)
        except StoreUnavailable:
            future = None
        except InvalidEvent as exc:  # e.g. a crew's tool output nested too deep: say so, go on
            if not isinstance(payload, Log):
                await self.log(f"a {payload.TYPE} event could not be stored ({exc}); ignored", "warning")
            return
        self._pending.append((event, future))
        if len(self._pending) > 500:
            await self.flush()

    async def log(self, message: str, level: str = "info", stream: str = "runner") -> None:
        await self.emit(
            Log(
                message=redact(message, self.secrets),
                level=level,
                stream=stream,
                timestamp=datetime.now(UTC).isoformat(),
            )
        )

    async def flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        futures = [f for _, f in pending if f is not None]
        if futures:
            # An ack lost in a broker restart never resolves its future: give up on it after a
            # while and send the event again (de-duplicated by its id if it had landed).
            _, late = await asyncio.wait(futures, timeout=self.ACK_WAIT_S)
            for future in late:
                future.cancel()
        missing = [e for e, f in pending if f is None or f.cancelled() or f.exception() is not None]
        for event in missing:
            await persist(self.store, event, self.RESEND_FOR_S)


async def persist(store: EventStore, event: Event, patience_s: float, expected_seq: int | None = None) -> int:
    """Append, waiting out a broker restart for up to ``patience_s`` seconds."""
    deadline = time.monotonic() + patience_s
    delay = 0.2
    while True:
        try:
            return await store.append(event, expected_seq=expected_seq)
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 3.0)


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
            encode_checked(event)
        except InvalidEvent as exc:  # e.g. an output nested deeper than any reader accepts
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


class Outcome(msgspec.Struct):
    result: Result | None = None
    error: CrewError | None = None
    stderr_tail: list[str] = msgspec.field(default_factory=list)
    #: The runtime that said hello ("python", "node"); None until it has.
    runtime: str | None = None
    ready: bool = False
    #: Why the run was stopped by the runner (a protocol it does not speak …); set with ``abort``.
    stopped: str | None = None
    abort: asyncio.Event = msgspec.field(default_factory=asyncio.Event)


def limits_for(config: CrewConfig, *, allow_host_network: bool = False) -> Limits:
    network = config.network
    if network == "host" and not allow_host_network:
        network = "default"  # the host's network is the operator's to give, never the crew's
    return Limits(
        memory_bytes=memory_bytes(config.memory) or 1024 * 1024 * 1024,
        cpus=config.cpus or 1.0,
        pids=config.pids or 256,
        network=network,
    )


def run_warnings(
    config: CrewConfig, refused_env: list[str], *, allow_host_network: bool, isolated: bool
) -> list[str]:
    """What the run's log says before the crew starts: settings that were not honoured."""
    warnings = [
        f"environment variable {name} is not applied: the name changes how programs load or start"
        " (or is reserved for the platform); remove it with `crewyard env unset`"
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


async def pump_output(handle: RunHandle, emitter: Emitter, outcome: Outcome) -> None:
    replies: set[asyncio.Task[None]] = set()
    try:
        async for stream, raw in handle.output():
            msg = decode_line(raw) if stream == "proto" else None
            if msg is not None and await _message(handle, emitter, outcome, msg, replies):
                continue
            # Log text is redacted (emitter.log); structured output (results, events) never is.
            text = raw.decode("utf-8", errors="replace")
            outcome.stderr_tail = [*outcome.stderr_tail[-19:], redact(text, emitter.secrets)]
            await emitter.log(text, "warning" if stream == "stderr" else "info", stream)
    finally:
        for task in replies:
            task.cancel()


def _stop(outcome: Outcome, reason: str) -> None:
    if outcome.stopped is None:
        outcome.stopped = reason
    outcome.abort.set()


async def _message(
    handle: RunHandle, emitter: Emitter, outcome: Outcome, msg: Message, replies: set[asyncio.Task[None]]
) -> bool:
    """Act on one protocol message; False when it is to be shown as text instead."""
    if outcome.stopped is not None:
        return False
    if outcome.runtime is None:  # the runtime's first line must say which protocol it speaks
        if isinstance(msg, Hello) and msg.v == VERSION:
            outcome.runtime = msg.runtime
            return True
        spoken = f"protocol v{msg.v}" if isinstance(msg, Hello) else "an older protocol (v1)"
        _stop(
            outcome,
            f"the crew's runtime speaks {spoken}; this runner speaks v{VERSION}:"
            " deploy the crew again to build it with the current runtime",
        )
        return False
    if isinstance(msg, LogLine):
        await emitter.log(msg.message, msg.level, msg.stream)
    elif isinstance(msg, CrewEvent):
        await _crew_event(emitter, msg)
    elif isinstance(msg, Result):
        outcome.result = msg
    elif isinstance(msg, CrewError):  # its message and traceback are text: redacted like logs
        outcome.error = msgspec.structs.replace(
            msg,
            message=redact(msg.message, emitter.secrets),
            traceback=redact(msg.traceback, emitter.secrets) if msg.traceback else msg.traceback,
        )
    elif isinstance(msg, Ready):
        outcome.ready = True
    elif isinstance(msg, Request):
        # No operation exists yet (threads and tables will add them): refuse cleanly. Sent from a
        # task, so that a runtime that does not read its stdin cannot stall this reader.
        reply = encode(refuse(msg, "unknown_op", f"this platform has no operation {msg.op!r}"))
        task = asyncio.create_task(handle.send(reply))
        replies.add(task)
        task.add_done_callback(replies.discard)
    return True


async def _crew_event(emitter: Emitter, msg: CrewEvent) -> None:
    if msg.type not in CREW_EMITTABLE:
        await emitter.log(f"crew emitted unknown event type {msg.type!r}; ignored", "warning")
        return
    try:
        payload = msgspec.convert(msg.data, PAYLOAD_TYPES[msg.type])
    except msgspec.ValidationError as exc:
        await emitter.log(f"crew emitted an invalid {msg.type} event ({exc}); ignored", "warning")
        return
    await emitter.emit(payload)


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
        return RunFailed(reason="infrastructure", error_message=outcome.stopped, duration_ms=duration_ms)
    if timed_out is not None:
        return RunFailed(
            reason="timeout", error_message=f"Run timed out after {timed_out:g}s", duration_ms=duration_ms
        )
    if outcome.result is not None and status is not None and status.code == 0:
        return RunCompleted(output=outcome.result.output, duration_ms=duration_ms)
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
) -> tuple[Outcome, ExitStatus | None, bool, bool]:
    """Run until the crew exits, times out or is canceled. Returns (outcome, exit, timed_out, canceled)."""
    outcome = Outcome()
    pump = asyncio.create_task(pump_output(handle, emitter, outcome))
    waiter = asyncio.create_task(handle.wait())
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
        for task in (pump, waiter, canceler, aborter):
            task.cancel()
    return outcome, status, timed_out, canceled
