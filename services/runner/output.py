"""Turning what a run's runtime says into events: the protocol, redaction, and a run's budget.

Protocol lines are decoded into the closed union of ``protocol.py``; the first must be the
runtime's ``hello`` in this runner's version. Redaction rewrites text only (log lines, stderr, an
error's message and traceback), never a result or an event's fields. Text reaches the runner cut:
into lines, stderr lines into 64 KiB pieces (``crewyard.lines``), a log message at 60 KiB by the
runtime (it does not know which values are secret). So a multi-line secret is redacted line by
line, and where text was cut a fragment of a secret is masked at the cut: at the end of a piece of
exactly 64 KiB of stderr or of a text ending in the cut's marker (`` … [N bytes cut]``), and at the
start of the next text of that stream. The runner's own cut comes after redaction.

A run's budget (:class:`Budget`): the crew's output becomes at most ``max_events`` events of at
most ``max_event_bytes`` bytes in all (log lines, events, requests: everything the crew makes
the runner write), and its ``result`` may be at most ``max_output`` bytes. A crew over a limit is
stopped at once and the run fails with reason ``limit``, naming it: a runaway crew cannot grow
the stream without bound. Protocol lines other than ``result`` are at most 64 KiB
(``protocol.json``); a longer one is dropped with a warning.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec

from crewyard.backoff import Backoff
from crewyard.core.events import CREW_EMITTABLE, PAYLOAD_TYPES, Event, InvalidEvent, Log, Payload, make_event
from crewyard.core.ids import new_id
from crewyard.eventstore import EventStore, StoreUnavailable
from crewyard.lines import MAX_LINE, OVERFLOW
from crewyard.secrets import Redactor

from .backends import RunHandle
from .protocol import (
    LINGER_SINCE,
    SPOKEN,
    VERSION,
    CrewError,
    CrewEvent,
    Hello,
    LogLine,
    Message,
    Oversized,
    Ready,
    Reply,
    Request,
    Result,
    decode_line,
    encode,
    refuse,
)

log = logging.getLogger("crewyard.runner")
#: A log event's text is cut here (a crew can write protocol lines by hand, past the runtime's cut).
MAX_LOG_TEXT = 60 * 1024


def _cut(text: str) -> str:
    """``text`` within MAX_LOG_TEXT bytes, not counting the marker of a runtime's own cut."""
    mark = _cut_mark(text)
    data = (text if mark < 0 else text[:mark]).encode("utf-8", errors="replace")
    if len(data) <= MAX_LOG_TEXT:
        return text
    return data[:MAX_LOG_TEXT].decode("utf-8", errors="ignore") + f" … [{len(data) - MAX_LOG_TEXT} bytes cut]"


def _cut_mark(text: str) -> int:
    """Where the marker of a cut (ours, or a runtime's: the same) ends ``text`` at; -1: none."""
    if text.endswith(" bytes cut]"):
        at = text.rfind(" … [")
        if at >= 0 and text[at + 4 : -11].isdigit():
            return at
    return -1


class Budget(msgspec.Struct, frozen=True, kw_only=True):
    max_events: int = 25_000
    max_event_bytes: int = 32 * 1024 * 1024
    max_output: int = 4 * 1024 * 1024
    #: The disk its files may take (``.disk``); None: not watched.
    max_disk: int | None = None


class Outcome(msgspec.Struct):
    result: Result | None = None
    error: CrewError | None = None
    stderr_tail: list[str] = msgspec.field(default_factory=list)
    #: The runtime that said hello ("python", "node"); None until it has.
    runtime: str | None = None
    #: The protocol version it speaks (0 until hello), and the hello's arrival.
    protocol: int = 0
    introduced: asyncio.Event = msgspec.field(default_factory=asyncio.Event)
    ready: bool = False
    #: Why the runner stopped the run, and the run's failure reason then; set with ``abort``.
    stopped: str | None = None
    stop_reason: str = "infrastructure"
    abort: asyncio.Event = msgspec.field(default_factory=asyncio.Event)
    events: int = 0
    event_bytes: int = 0
    #: The kinds of the runtime's once-said messages seen (ready, result, error).
    said: set[str] = msgspec.field(default_factory=set)


class Emitter:
    """Chatty run events, pipelined; the terminal event goes through :func:`finish`.

    While the broker is away (restarting, failing over) events are kept and sent again once it
    answers; the server's de-duplication by event id makes a resend that had landed harmless.
    """

    RESEND_FOR_S = 120.0
    ACK_WAIT_S = 10.0

    def __init__(self, store: EventStore, project: str, run_id: str, secrets: list[str]) -> None:
        self.store, self.project, self.run_id, self.secrets = store, project, run_id, secrets
        self.redactor = Redactor(secrets)
        self._pending: list[tuple[Event, asyncio.Future[Any] | None]] = []
        self._cut_streams: set[str] = set()  # streams whose last text ended at a cut

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

    async def log(
        self, message: str, level: str = "info", stream: str = "runner", *, cut: bool = False
    ) -> str:
        """Log ``message`` redacted and cut; returns the text logged. ``cut``: the message is a
        piece of a longer line, whose rest comes next on ``stream``."""
        text = _cut(self.redact(message, stream, cut=cut))
        now = datetime.now(UTC).isoformat()
        await self.emit(Log(message=text, level=level, stream=stream, timestamp=now))
        return text

    def redact(self, text: str, stream: str | None = None, *, cut: bool = False) -> str:
        """``text`` redacted; as the next text of ``stream`` (see the module doc), if given."""
        if not self.redactor:
            return text
        if stream is None:
            return self.redactor(text)
        mark = _cut_mark(text)
        head = stream in self._cut_streams
        if cut or mark >= 0:
            self._cut_streams.add(stream)
        else:
            self._cut_streams.discard(stream)
        if mark < 0:
            return self.redactor(text, head=head, tail=cut)
        return self.redactor(text[:mark], head=head, tail=True) + text[mark:]

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
    patience = Backoff(patience_s, first=0.2, most=3.0)
    while True:
        try:
            return await store.append(event, expected_seq=expected_seq)
        except StoreUnavailable:
            if patience.expired:
                raise
            await patience.pause()


#: Answers the runtime's requests (``session.RunSession.serve``).
Serve = Callable[[Request], Awaitable[Reply]]
#: Requests of one run answered at once; more wait (and so does the crew's output behind them).
MAX_REQUESTS_IN_FLIGHT = 16


async def pump_output(
    handle: RunHandle,
    emitter: Emitter,
    outcome: Outcome,
    budget: Budget | None = None,
    serve: Serve | None = None,
) -> None:
    budget = budget or Budget()
    replies: set[asyncio.Task[None]] = set()
    sending = asyncio.Lock()
    try:
        async for stream, raw in handle.output():
            if stream == OVERFLOW:
                stop(
                    outcome,
                    f"the crew's runtime sent a message of {int(raw)} bytes: a run's output may be at most"
                    f" {budget.max_output} bytes (CREWYARD_MAX_OUTPUT_BYTES)",
                    "limit",
                )
                continue
            msg = decode_line(raw, MAX_LINE) if stream == "proto" else None
            if msg is not None and outcome.runtime is None and outcome.stopped is None:
                _introduce(outcome, msg)
                if outcome.runtime is not None:
                    continue
            # A runtime says ready, its result or its error once each, and they are no events of
            # the run: the first of each spends no budget; a repeat spends like any line (a crew
            # could write them without end, each error redacted on the runner's loop).
            once = _first(outcome, msg)
            if (
                once
                and isinstance(msg, Result | CrewError)
                and outcome.protocol >= LINGER_SINCE
                and outcome.stopped is None
            ):
                ending = asyncio.create_task(_end_input(handle))  # its last line: a lingering
                replies.add(ending)  # runtime may end now (after what follows is stored)
                ending.add_done_callback(replies.discard)
            if isinstance(msg, Result):
                if once or _spend(outcome, len(raw), budget):
                    _result(outcome, msg, len(raw), budget)
                continue
            # Ready and error only while it runs and in bounds: once stopped, or over MAX_LINE,
            # they become a line of the log.
            said = isinstance(msg, Ready | CrewError) and len(raw) <= MAX_LINE and outcome.stopped is None
            said = said and once
            if not said and not _spend(outcome, len(raw), budget):
                continue  # over the budget: the crew is being stopped; nothing more is written
            if isinstance(msg, Oversized) or (msg is not None and len(raw) > MAX_LINE):
                await emitter.log(
                    f"a {len(raw)}-byte protocol message was dropped: over {MAX_LINE} bytes", "warning"
                )
                continue
            if isinstance(msg, Request) and outcome.stopped is None:
                await _request(handle, msg, serve, replies, sending)
                continue
            if msg is not None and await _message(handle, emitter, outcome, msg, replies):
                continue
            # Log text is redacted (emitter.log); structured output (results, events) never is.
            # A piece of a longer stderr line is exactly MAX_LINE long (crewyard.lines).
            text = raw.decode("utf-8", errors="replace")
            level, piece = ("warning", len(raw) == MAX_LINE) if stream == "stderr" else ("info", False)
            logged = await emitter.log(text, level, stream, cut=piece)
            outcome.stderr_tail = [*outcome.stderr_tail[-19:], logged]
    finally:
        for task in replies:
            task.cancel()


async def _end_input(handle: RunHandle) -> None:
    """End the runtime's input; a handle that cannot only leaves the runtime to its bound."""
    try:
        await handle.end_input()
    except Exception:
        log.warning("could not end a runtime's input", exc_info=True)


def _spend(outcome: Outcome, size: int, budget: Budget) -> bool:
    """Count one line of the crew's output; False once the run is over its budget."""
    if outcome.stopped is not None and outcome.stop_reason == "limit":
        return False
    outcome.events += 1
    outcome.event_bytes += size
    if outcome.events > budget.max_events:
        stop(
            outcome,
            f"the run produced more than {budget.max_events} events (CREWYARD_RUN_MAX_EVENTS)",
            "limit",
        )
        return False
    if outcome.event_bytes > budget.max_event_bytes:
        stop(
            outcome,
            f"the run produced more than {budget.max_event_bytes} bytes of events"
            " (CREWYARD_RUN_MAX_EVENT_BYTES)",
            "limit",
        )
        return False
    return True


def _introduce(outcome: Outcome, msg: Message | Oversized) -> None:
    """The runtime's first line must say which protocol it speaks; stop one that speaks another."""
    outcome.introduced.set()
    if isinstance(msg, Hello) and msg.v in SPOKEN:
        outcome.runtime, outcome.protocol = msg.runtime, msg.v
        return
    if isinstance(msg, Oversized) and msg.t == "hello":  # no runtime of ours says hello at length
        stop(outcome, f"the crew's runtime said hello in a line of over {MAX_LINE} bytes (not ours)")
        return
    spoken = f"protocol v{msg.v}" if isinstance(msg, Hello) else "an older protocol (v1)"
    stop(
        outcome,
        f"the crew's runtime speaks {spoken}; this runner speaks v{VERSION} (and v{min(SPOKEN)}):"
        " deploy the crew again to build it with the current runtime",
    )


def _first(outcome: Outcome, msg: Message | Oversized | None) -> bool:
    """Whether ``msg`` is the runtime's first ready, result or error of the run."""
    if not isinstance(msg, Ready | Result | CrewError):
        return False
    kind = type(msg).__name__
    if kind in outcome.said:
        return False
    outcome.said.add(kind)
    return True


def _result(outcome: Outcome, msg: Result, size: int, budget: Budget) -> None:
    if outcome.stopped is not None:
        return
    if size > budget.max_output:
        stop(
            outcome,
            f"the run's output is {size} bytes, over the {budget.max_output}-byte limit"
            " (CREWYARD_MAX_OUTPUT_BYTES)",
            "limit",
        )
        return
    outcome.result = msg


def stop(outcome: Outcome, message: str, reason: str = "infrastructure") -> None:
    """Stop the run (the first reason given is kept): ``supervise`` ends it at once."""
    if outcome.stopped is None:
        outcome.stopped, outcome.stop_reason = message, reason
    outcome.abort.set()


async def _message(
    handle: RunHandle, emitter: Emitter, outcome: Outcome, msg: Message, replies: set[asyncio.Task[None]]
) -> bool:
    """Act on one protocol message; False when it is to be shown as text instead."""
    if outcome.stopped is not None:
        return False
    if isinstance(msg, LogLine):
        await crew_log(emitter, msg.message, msg.level, msg.stream)
    elif isinstance(msg, CrewEvent):
        await _crew_event(emitter, msg)
    elif isinstance(msg, CrewError):  # its message and traceback are text: redacted like logs
        outcome.error = msgspec.structs.replace(
            msg,
            message=emitter.redact(msg.message),
            traceback=emitter.redact(msg.traceback) if msg.traceback else msg.traceback,
        )
    elif isinstance(msg, Ready):
        outcome.ready = True
    return True


async def _request(
    handle: RunHandle,
    msg: Request,
    serve: Serve | None,
    replies: set[asyncio.Task[None]],
    sending: asyncio.Lock,
) -> None:
    """Answer in a task of its own, so that a slow operation or a runtime that does not read its
    stdin never stalls this reader; past ``MAX_REQUESTS_IN_FLIGHT`` unanswered ones, wait. A reply
    is encoded only when its turn to be sent comes (``sending``): sixteen replies of 32 MiB each,
    encoded and waiting for a crew that does not read its stdin, held 512 MB of the runner."""
    while len(replies) >= MAX_REQUESTS_IN_FLIGHT:
        await asyncio.wait(set(replies), return_when=asyncio.FIRST_COMPLETED)

    async def answer() -> None:
        if serve is None:
            reply = refuse(msg, "unknown_op", f"this platform has no operation {msg.op!r}")
        else:
            reply = await serve(msg)
        async with sending:
            await handle.send(encode(reply))

    task = asyncio.create_task(answer())
    replies.add(task)
    task.add_done_callback(replies.discard)


#: A crew's log line says its level and where it came from; "runner" is the platform's own.
LEVELS = frozenset({"debug", "info", "warning", "error"})
PLATFORM_STREAMS = frozenset({"runner"})


def _crew_stream(stream: str) -> str:
    plain = stream.isascii() and stream.replace("_", "").replace("-", "").isalnum() and len(stream) <= 32
    return stream if plain and stream not in PLATFORM_STREAMS else "crew"


async def crew_log(emitter: Emitter, message: str, level: str, stream: str) -> None:
    """A line the crew logged, however it sent it: redacted and cut like any log text, at a
    known level, and never under the platform's own name."""
    await emitter.log(message, level if level in LEVELS else "info", _crew_stream(stream))


async def _crew_event(emitter: Emitter, msg: CrewEvent) -> None:
    if msg.type not in CREW_EMITTABLE:
        await emitter.log(f"crew emitted unknown event type {msg.type!r}; ignored", "warning")
        return
    try:
        payload = msgspec.convert(msg.data, PAYLOAD_TYPES[msg.type])
    except msgspec.ValidationError as exc:
        await emitter.log(f"crew emitted an invalid {msg.type} event ({exc}); ignored", "warning")
        return
    if isinstance(payload, Log):  # the crew's own time and stream are not taken as they come
        await crew_log(emitter, payload.message, payload.level, payload.stream)
        return
    await emitter.emit(payload)
