"""What one run may ask of the platform over the runtime protocol, and a thread run's thread.

Requests (``request {id, op, args}``) are answered here: the run's project's tables
(:mod:`.tables`), a thread run's state (``thread.get``) and the state it leaves
(``thread.save``), and the pieces of arguments too long for one line (``blob.append``). Nothing
else: a crew reaches no API and no broker, only these operations, scoped to its own run.

A thread run, in order: the thread must be busy with this run (else the run does not start —
it was accepted too late, after the thread had been freed); the crew saves its state as it
ends; if the run succeeds the checkpoint is written (``thread.checkpointed``) *before* the run's
terminal event, and the thread is ended after it (``thread.run_ended``). A runner that dies in
between leaves a run that is retried from the thread's state before the run, or a thread whose
run has ended: the runner's thread keeper (or the next start of a run) settles it.

Arguments sent in pieces are bounded before they are decoded (32 MiB of ``[{},{},…]`` decodes
into some ten million dicts, 800 MB): their length by what their operation may carry
(``thread.save``: ``MAX_STATE_BYTES``; a table operation: ``tables.MAX_ARGS_BYTES``), and the
Python objects they can make by ``MAX_ARG_VALUES``, counted on the text: a JSON value (a key
too) is the whole text or follows a ``{``, ``[``, ``,`` or ``:``, so a text holds at most one
value more than it has of these characters (those inside strings are counted too: an upper
bound). A decoded value costs at most some 100 bytes beyond its own text.

``thread.get`` is answered one request at a time, and its first answer is kept (as the JSON it is
sent as: a stored checkpoint is never decoded here) for the rest of the run: the thread is busy
with the run, so the state it starts from cannot change meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec

from crewyard.core import run_state as rs
from crewyard.core.bounds import OutOfBounds, check_json
from crewyard.core.events import (
    InvalidEvent,
    Payload,
    RunCompleted,
    RunFailed,
    ThreadCreated,
    make_event,
)
from crewyard.core.ids import new_id
from crewyard.eventstore import ConcurrencyConflict, EventStore
from crewyard.objects import ObjectStore
from crewyard.threads import checkpoint_event, checkpoint_json, latest_checkpoint, load_thread, settle

from .execution import persist
from .protocol import Reply, ReplyError, Request, ThreadStart
from .tables import MAX_ARGS_BYTES, OpError, RunTables

log = logging.getLogger("crewyard.runner")
#: What a run may send as pieces of its requests' arguments, in all.
MAX_BLOB_BYTES = 32 * 1024 * 1024
#: The largest reply (a page of rows, a thread's state); a larger one is refused.
MAX_REPLY_BYTES = 32 * 1024 * 1024
#: The longest state a run may leave (``thread.save``'s arguments): the next run's ``thread.get``
#: answers with it and the thread's metadata (up to 1 MiB), within ``MAX_REPLY_BYTES``.
MAX_STATE_BYTES = MAX_REPLY_BYTES - 2 * 1024 * 1024
#: The most JSON values the arguments sent in pieces may hold (see the module's docstring).
MAX_ARG_VALUES = 2_000_000
_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder()


class RunSession:
    def __init__(self, store: EventStore, objects: ObjectStore, state: rs.RunState, framework: str) -> None:
        self.store, self.objects, self.run, self.framework = store, objects, state, framework
        self.tables = RunTables(store, state.project, state.run_id)
        self._blobs: dict[str, list[str]] = {}
        self._blob_bytes = 0
        self._saved: dict[str, Any] | None = None
        self._parent: str | None = None
        #: thread.get's answer, as JSON: one at a time, kept once made (see ``_thread_get``).
        self._thread_lock = asyncio.Lock()
        #: Arguments sent in pieces are decoded, and used, one request at a time (each may be
        #: some hundred MB as Python objects: twelve at once took 680 MB).
        self._large = asyncio.Lock()
        self._thread_state: msgspec.Raw | None = None

    @property
    def thread(self) -> ThreadStart | None:
        if self.run.thread_id is None:
            return None
        return ThreadStart(id=self.run.thread_id, command=self.run.command)

    async def refusal(self) -> str | None:
        """Why this run must not start (a thread run whose thread is not busy with it), or None."""
        if self.run.thread_id is None:
            return None
        state, _ = await load_thread(self.store, self.run.thread_id, self.run.project)
        if not state.exists:
            return f"thread {self.run.thread_id} no longer exists"
        if state.active_run_id != self.run.run_id:
            return (
                f"thread {self.run.thread_id} is not running this run (it was freed before the run started)"
            )
        return None

    async def close(self) -> None:
        await self.tables.close()

    # -- requests --

    async def serve(self, request: Request) -> Reply:
        try:
            value = await self._dispatch(request.op, request.args)
            reply = Reply(id=request.id, ok=True, value=value)
            if len(_enc.encode(reply)) > MAX_REPLY_BYTES:
                raise OpError("too_large", f"the answer is larger than {MAX_REPLY_BYTES} bytes; ask for less")
            return reply
        except OpError as exc:
            return Reply(id=request.id, ok=False, error=ReplyError(code=exc.code, message=str(exc)))
        except Exception as exc:  # the platform's fault, not the crew's: say so, keep the run going
            log.warning("run %s: %s failed: %r", self.run.run_id, request.op, exc)
            message = f"{request.op} failed: {type(exc).__name__}"
            return Reply(id=request.id, ok=False, error=ReplyError(code="unavailable", message=message))

    async def _dispatch(self, op: str, args: dict[str, Any]) -> Any:
        if op == "blob.append":
            return self._append_blob(args)
        if set(args) == {"$blob"}:  # every op but thread.save takes a table's arguments, or none
            async with self._large:
                most = MAX_STATE_BYTES if op == "thread.save" else MAX_ARGS_BYTES
                return await self._op(op, self._take_blob(args["$blob"], most))
        return await self._op(op, args)

    async def _op(self, op: str, args: dict[str, Any]) -> Any:
        if op.startswith("table."):
            return await self.tables.handle(op, args)
        if op == "thread.get":
            return await self._thread_get()
        if op == "thread.save":
            return self._thread_save(args)
        raise OpError("unknown_op", f"this platform has no operation {op!r}")

    def _append_blob(self, args: dict[str, Any]) -> None:
        blob, data = args.get("blob"), args.get("data")
        if not isinstance(blob, str) or not isinstance(data, str) or len(blob) > 64:
            raise OpError("invalid", "blob.append takes {blob, data} (strings)")
        self._blob_bytes += len(data.encode())  # (bytes as stored and sent back, not characters)
        if self._blob_bytes > MAX_BLOB_BYTES:
            raise OpError("too_large", f"a run's requests may carry at most {MAX_BLOB_BYTES} bytes")
        self._blobs.setdefault(blob, []).append(data)

    def _take_blob(self, blob: Any, most: int) -> dict[str, Any]:
        pieces = self._blobs.pop(blob, None) if isinstance(blob, str) else None
        if pieces is None:
            raise OpError("invalid", f"no blob {blob!r} was sent")
        if sum(len(piece.encode()) for piece in pieces) > most:
            raise OpError("too_large", f"these arguments may be at most {most} bytes long (UTF-8)")
        text = "".join(pieces)
        del pieces
        if 1 + sum(map(text.count, "{[,:")) > MAX_ARG_VALUES:
            raise OpError(
                "too_large",
                f"the arguments may hold at most {MAX_ARG_VALUES} JSON values (counted as the"
                " characters '{', '[', ',' and ':' in their text, strings included)",
            )
        try:
            args = _dec.decode(text)
        except (msgspec.DecodeError, RecursionError):
            raise OpError("invalid", "the pieces of the arguments are not JSON") from None
        if not isinstance(args, dict):
            raise OpError("invalid", "arguments must be a JSON object")
        return args

    async def _thread_get(self) -> msgspec.Raw:
        """The state the run starts from. A crew may ask many times at once (16 requests in
        flight), and each answer read a stored checkpoint of up to 32 MiB and decoded it (some
        800 MB of Python objects): gigabytes of the runner. Answers are made one at a time, and
        the first is kept as the JSON it is sent as, never decoded: the thread is busy with this
        run, so the state it starts from cannot change during it (its own checkpoint comes after
        the crew ended, and a retried attempt is a session of its own that reads again)."""
        if self.run.thread_id is None:
            raise OpError("invalid", "this run is not a thread's run")
        async with self._thread_lock:
            if self._thread_state is None:
                self._thread_state = await self._read_thread_state(self.run.thread_id)
            return self._thread_state

    async def _read_thread_state(self, thread_id: str) -> msgspec.Raw:
        state, records = await load_thread(self.store, thread_id, self.run.project)
        source = await latest_checkpoint(self.store, state, records, not_of_run=self.run.run_id)
        if source is None:  # no run has left a state yet: the thread's initial values
            created = next((r.event.data for r in records if isinstance(r.event.data, ThreadCreated)), None)
            values: Any = dict(getattr(created, "values", None) or {})
            checkpoint: Any = None
            interrupts: Any = []
            interrupted, parent = False, None
        else:
            parts = await checkpoint_json(self.objects, source)
            values, checkpoint, interrupts = parts.values, parts.checkpoint, parts.interrupts
            interrupted, parent = source.interrupted, source.checkpoint_id
        answer = msgspec.Raw(
            _enc.encode(
                {
                    "thread_id": state.thread_id,
                    "values": values,
                    "checkpoint": checkpoint,
                    "interrupted": interrupted,
                    "interrupts": interrupts,
                    "metadata": state.metadata,
                }
            )
        )
        self._parent = parent  # the checkpoint this run's own will follow
        return answer

    def _thread_save(self, args: dict[str, Any]) -> None:
        if self.run.thread_id is None:
            raise OpError("invalid", "this run is not a thread's run")
        values, interrupts = args.get("values"), args.get("interrupts") or []
        if not isinstance(values, dict) or not isinstance(interrupts, list):
            raise OpError("invalid", "thread.save takes {values: object, checkpoint?, interrupts?: list}")
        try:
            check_json(args, "the thread's state")
        except OutOfBounds as exc:
            raise OpError("invalid", str(exc)) from None
        saved = {"values": values, "checkpoint": args.get("checkpoint"), "interrupts": interrupts}
        if len(_enc.encode(saved)) > MAX_STATE_BYTES:  # (sent inline, or as pieces of other text)
            raise OpError("too_large", f"a thread's state may be at most {MAX_STATE_BYTES} bytes as JSON")
        self._saved = saved

    # -- the end of a thread run --

    async def conclude(self, payload: Payload) -> Payload:
        """Before the run's terminal event: a succeeded thread run's checkpoint is written (the
        payload becomes a failure if it cannot be)."""
        if self.run.thread_id is None or not isinstance(payload, RunCompleted) or self._saved is None:
            return payload
        try:
            checkpointed = await checkpoint_event(
                self.objects,
                run_id=self.run.run_id,
                values=self._saved["values"],
                checkpoint=self._saved["checkpoint"],
                interrupts=self._saved["interrupts"],
                framework=self.framework,
                parent_checkpoint_id=self._parent,
            )
            written = await self._write_checkpoint(checkpointed)
        except InvalidEvent as exc:
            return RunFailed(reason="limit", error_message=f"the thread's state cannot be stored: {exc}")
        if not written:
            return RunFailed(
                reason="thread", error_message=f"thread {self.run.thread_id} no longer runs this run"
            )
        return payload

    async def _write_checkpoint(self, checkpointed: Payload) -> bool:
        thread_id = self.run.thread_id or ""
        for _ in range(10):
            state, _ = await load_thread(self.store, thread_id, self.run.project)
            if state.active_run_id != self.run.run_id:
                return False
            event = make_event(
                checkpointed, project=self.run.project, aggregate_id=thread_id, event_id=new_id("evt")
            )
            try:
                await persist(self.store, event, 120.0, expected_seq=state.version)
                return True
            except ConcurrencyConflict:
                continue
        return False

    async def ended(self) -> None:
        """After the run's terminal event: the thread is idle, interrupted or in error again."""
        if self.run.thread_id is not None:
            await settle(self.store, self.run.project, self.run.thread_id, self.run.run_id)
