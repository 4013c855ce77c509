"""Threads over the stream: a thread's state in one read, its checkpoints (inline or in the object
store), and the writes every service makes to it — start a run (two steps), settle a run that
ended, write a checkpoint.

Used by the gateway (start, copy, delete), the runner (a thread run's state and its checkpoint)
and the runner's thread keeper (settling). The rules are the core's (:mod:`crewyard.core.threads`).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import msgspec

from crewyard.core import run_state as rs
from crewyard.core import subjects
from crewyard.core import threads as core
from crewyard.core.events import (
    CheckpointRef,
    InvalidEvent,
    Recorded,
    RunQueued,
    ThreadCheckpointed,
    ThreadCreated,
    make_event,
    unreadable,
)
from crewyard.core.ids import new_id
from crewyard.core.versions import Resolved
from crewyard.eventstore import ConcurrencyConflict, EventStore, set_aside
from crewyard.objects import ObjectStore

#: A checkpoint whose event would be larger than this goes to the object store (the event keeps
#: a reference): the stream's messages stay small, however long a conversation gets.
CHECKPOINT_INLINE_BYTES = 256 * 1024
#: A stored checkpoint's event keeps its interrupts inline up to this (encoded): larger ones are
#: read from the stored checkpoint, the event only counts them (``interrupt_count``). Left inline,
#: a crew's interrupts of megabytes made events of megabytes, loaded by every reader of the thread.
INTERRUPTS_INLINE_BYTES = 16 * 1024
_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder()

Checkpoint = ThreadCheckpointed | ThreadCreated


def checkpoint_object(sha256: str) -> str:
    return f"checkpoints/{sha256}"


async def load_thread(
    store: EventStore, thread_id: str, project: str | None = None
) -> tuple[core.ThreadState, list[Recorded]]:
    """The thread's state from its latest event of each type (one read), and those events."""
    if project is not None:
        filt = subjects.aggregate_filter(project, "thread", thread_id, store.prefix)
    else:
        filt = subjects.any_project_aggregate_filter("thread", thread_id, store.prefix)
    records = []
    for raw in await store.last_per_subject(filt):
        try:
            records.append(raw.decode(store.prefix))
        except InvalidEvent as exc:
            set_aside("threads", raw.seq, raw.subject, exc)
            records.append(unreadable(raw.seq, project or "", "thread", thread_id, str(exc)))
    return core.fold(thread_id, records), records


async def checkpoint_event(
    objects: ObjectStore,
    *,
    run_id: str | None,
    values: dict[str, Any],
    checkpoint: Any,
    interrupts: list[Any],
    framework: str | None,
    parent_checkpoint_id: str | None,
    inline_limit: int = CHECKPOINT_INLINE_BYTES,
) -> ThreadCheckpointed:
    """A ``thread.checkpointed`` payload; over ``inline_limit`` its content goes to the object
    store (by content hash) and the event refers to it, keeping only small interrupts inline."""
    payload = ThreadCheckpointed(
        checkpoint_id=new_id("ckp"),
        run_id=run_id,
        values=values,
        checkpoint=checkpoint,
        interrupts=interrupts,
        parent_checkpoint_id=parent_checkpoint_id,
        framework=framework,
    )
    if len(_enc.encode(payload)) <= inline_limit:
        return payload
    body = _enc.encode({"values": values, "checkpoint": checkpoint, "interrupts": interrupts})
    sha = hashlib.sha256(body).hexdigest()
    if not await objects.exists(checkpoint_object(sha)):
        await objects.put_bytes(checkpoint_object(sha), body)
    ref = CheckpointRef(sha256=sha, size=len(body))
    if len(_enc.encode(interrupts)) <= INTERRUPTS_INLINE_BYTES:
        return msgspec.structs.replace(payload, values=None, checkpoint=None, ref=ref)
    return msgspec.structs.replace(
        payload, values=None, checkpoint=None, interrupts=[], interrupt_count=len(interrupts), ref=ref
    )


async def checkpoint_content(objects: ObjectStore, data: Checkpoint) -> tuple[dict[str, Any], Any, list[Any]]:
    """(values, the framework's checkpoint, interrupts) of a checkpoint, inline or stored."""
    if data.ref is None:
        return dict(data.values or {}), data.checkpoint, list(data.interrupts)
    stored = _dec.decode(await objects.get_bytes(checkpoint_object(data.ref.sha256)))
    return dict(stored.get("values") or {}), stored.get("checkpoint"), list(stored.get("interrupts") or [])


class StoredCheckpoint(msgspec.Struct):
    """A checkpoint kept in the object store, its parts as the JSON they are: a state may be
    32 MiB of JSON, which is hundreds of MB as Python objects, and a reader that only passes it on
    (the runner's ``thread.get``, the gateway's thread views) keeps it as bytes (slices of the
    object read)."""

    values: msgspec.Raw = msgspec.Raw(b"{}")
    checkpoint: msgspec.Raw = msgspec.Raw(b"null")
    interrupts: msgspec.Raw = msgspec.Raw(b"[]")


_stored_dec = msgspec.json.Decoder(StoredCheckpoint)


async def stored_checkpoint(
    objects: ObjectStore, sha256: str, unreadable: StoredCheckpoint | None = None
) -> tuple[StoredCheckpoint, int]:
    """A checkpoint kept in the object store, and how many bytes it was there. An object that is
    not what a runner writes raises ``msgspec.DecodeError`` — a run must never start from an
    empty state in its place (its own checkpoint would follow the lost one) — or, for a view
    that shows what it can, reads as ``unreadable``."""
    raw = await objects.get_bytes(checkpoint_object(sha256))
    try:
        return _stored_dec.decode(raw), len(raw)
    except msgspec.DecodeError:
        if unreadable is None:
            raise
        return unreadable, len(raw)


async def checkpoint_json(objects: ObjectStore, data: Checkpoint) -> StoredCheckpoint:
    """:func:`checkpoint_content` as JSON, never decoded (see :class:`StoredCheckpoint`)."""
    if data.ref is None:
        values, checkpoint, interrupts = await checkpoint_content(objects, data)
        return StoredCheckpoint(
            msgspec.Raw(_enc.encode(values)),
            msgspec.Raw(_enc.encode(checkpoint)),
            msgspec.Raw(_enc.encode(interrupts)),
        )
    return (await stored_checkpoint(objects, data.ref.sha256))[0]


async def latest_checkpoint(
    store: EventStore, state: core.ThreadState, records: list[Recorded], *, not_of_run: str | None = None
) -> Checkpoint | None:
    """The thread's latest checkpoint; with ``not_of_run``, the latest one that run did not write
    (an attempt that is retried starts from where its run started, never from its own earlier
    attempt's checkpoint)."""
    if not state.checkpoint_seq:
        return None
    head = next((r.event.data for r in records if r.seq == state.checkpoint_seq), None)
    if isinstance(head, Checkpoint) and (not_of_run is None or state.checkpoint_run_id != not_of_run):
        return head
    # Rare (a runner died between a run's checkpoint and its end): look through the history.
    filt = subjects.aggregate_filter(state.project, "thread", state.thread_id, store.prefix)
    best: Checkpoint | None = None
    for raw in await store.load_raw(filt[:-1] + "thread.*"):
        try:
            data = raw.decode(store.prefix).event.data
        except InvalidEvent:
            continue
        written_before = isinstance(data, ThreadCheckpointed) and data.run_id != not_of_run
        copied = isinstance(data, ThreadCreated) and data.checkpoint_id is not None
        if written_before or copied:
            best = data  # type: ignore[assignment]
    return best


def encode_checkpoint(serde: str, data: bytes) -> dict[str, Any]:
    return {"serde": serde, "data": base64.b64encode(data).decode()}


async def accept_run(store: EventStore, state: core.ThreadState, run_id: str) -> int:
    """Step 1 of a thread run: the thread is busy with ``run_id`` (expected sequence: of several
    at once, one wins; the others get :class:`ConcurrencyConflict`)."""
    accepted = core.decide_run(state, run_id)
    event = make_event(accepted, project=state.project, aggregate_id=state.thread_id, event_id=new_id("evt"))
    return await store.append(event, expected_seq=state.version)


async def queue_run(
    store: EventStore,
    state: core.ThreadState,
    run_id: str,
    target: Resolved,
    *,
    input: dict[str, Any],
    command: dict[str, Any] | None,
) -> int:
    """Step 2: the run itself (a crash before it is settled by :func:`settle`)."""
    queued = RunQueued(
        deployment_id=target.deployment_id,
        input=input,
        environment=target.environment,
        version_number=target.number,
        thread_id=state.thread_id,
        command=command,
    )
    event = make_event(
        queued,
        project=state.project,
        aggregate_id=run_id,
        event_id=new_id("evt"),
        correlation_id=state.thread_id,
    )
    return await store.append(event, expected_seq=0)


async def settle(
    store: EventStore, project: str, thread_id: str, run_id: str, *, gave_up: bool = False
) -> bool:
    """End the thread's ``run_id`` if that run is over (or, with ``gave_up``, was never queued);
    True when the thread is no longer busy with it."""
    for _ in range(5):
        state, _ = await load_thread(store, thread_id, project)
        if state.active_run_id != run_id or state.status != core.BUSY:
            return True
        run = rs.fold(run_id, await store.load(project, "run", run_id, types=rs.LIFECYCLE))
        status = run.status if run.is_terminal else None
        if run.exists and status is None:
            return False
        ended = core.decide_settle(state, run_id, status, gave_up=gave_up and not run.exists)
        if ended is None:
            return False
        event = make_event(ended, project=project, aggregate_id=thread_id, event_id=new_id("evt"))
        try:
            await store.append(event, expected_seq=state.version)
            return True
        except ConcurrencyConflict:
            continue
    return False
