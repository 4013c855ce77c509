"""How ``thread.*`` events change the read model: the thread's row (status, current values) and
its checkpoint history (one entry per run: a run retried after its runner died between its
checkpoint and its end keeps only its last checkpoint).

An event changes only a thread of its own project: every statement names the project (the
checkpoint history, which has no project column, is written only for a thread row of the
event's project), so an event of one project that names another's thread id changes nothing.
Ids are random, but anyone who may write a project's events can write any id."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiosqlite
import msgspec

from crewyard.core.events import (
    Event,
    ThreadCheckpointed,
    ThreadCreated,
    ThreadDeleted,
    ThreadRunAccepted,
    ThreadRunEnded,
)

Handler = Callable[[aiosqlite.Connection, int, Event], Awaitable[None]]
_enc = msgspec.json.Encoder()


def _json(value: Any) -> str:
    return _enc.encode(value).decode()


async def _owned(db: aiosqlite.Connection, e: Event) -> bool:
    """Whether the event's thread is a row of the event's project."""
    async with db.execute(
        "SELECT 1 FROM threads WHERE id = ? AND project = ?", (e.aggregate_id, e.project)
    ) as cur:
        return await cur.fetchone() is not None


def _state(data: ThreadCreated | ThreadCheckpointed) -> tuple[str | None, str | None]:
    """(values as JSON, object-store reference) of a checkpoint's state."""
    if data.ref is not None:
        return None, data.ref.sha256
    return _json(data.values or {}), None


async def _checkpoint(
    db: aiosqlite.Connection, seq: int, e: Event, data: ThreadCreated | ThreadCheckpointed
) -> None:
    run_id = data.run_id if isinstance(data, ThreadCheckpointed) else None
    if run_id is not None:
        await db.execute(
            "DELETE FROM thread_checkpoints WHERE thread_id = ? AND run_id = ?", (e.aggregate_id, run_id)
        )
    state, ref = _state(data)
    await db.execute(
        "INSERT OR REPLACE INTO thread_checkpoints (thread_id, seq, checkpoint_id, run_id, state, checkpoint,"
        " interrupts, state_ref, parent_checkpoint_id, framework, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            e.aggregate_id,
            seq,
            data.checkpoint_id,
            run_id,
            state,
            None if data.ref is not None or data.checkpoint is None else _json(data.checkpoint),
            _json(data.interrupts),  # a stored checkpoint's large ones: read there (the gateway)
            ref,
            data.parent_checkpoint_id if isinstance(data, ThreadCheckpointed) else None,
            data.framework if isinstance(data, ThreadCheckpointed) else None,
            e.time.isoformat(),
        ),
    )


async def thread_created(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    d = e.data
    assert isinstance(d, ThreadCreated)
    state, ref = _state(d) if d.checkpoint_id else (_json(d.values) if d.values is not None else None, None)
    await db.execute(
        "INSERT OR IGNORE INTO threads (id, project, name, deployment_id, status, metadata, state, state_ref,"
        " checkpoint_id, copied_from, created_at, updated_at, last_seq)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            e.aggregate_id,
            e.project,
            d.name,
            d.deployment_id,
            "interrupted" if d.interrupted else "idle",
            _json(d.metadata),
            state,
            ref,
            d.checkpoint_id,
            d.copied_from,
            e.time.isoformat(),
            e.time.isoformat(),
            seq,
        ),
    )
    if d.checkpoint_id is not None and await _owned(db, e):  # not another project's thread id
        await _checkpoint(db, seq, e, d)


async def run_accepted(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    d = e.data
    assert isinstance(d, ThreadRunAccepted)
    await db.execute(
        "UPDATE threads SET status = 'busy', active_run_id = ?, updated_at = ?, last_seq = ?"
        " WHERE id = ? AND project = ?",
        (d.run_id, e.time.isoformat(), seq, e.aggregate_id, e.project),
    )


async def checkpointed(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    d = e.data
    assert isinstance(d, ThreadCheckpointed)
    if not await _owned(db, e):
        return
    await _checkpoint(db, seq, e, d)
    state, ref = _state(d)
    await db.execute(
        "UPDATE threads SET state = ?, state_ref = ?, checkpoint_id = ?, updated_at = ?, last_seq = ?"
        " WHERE id = ? AND project = ?",
        (state, ref, d.checkpoint_id, e.time.isoformat(), seq, e.aggregate_id, e.project),
    )


async def run_ended(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    d = e.data
    assert isinstance(d, ThreadRunEnded)
    await db.execute(
        "UPDATE threads SET status = ?, active_run_id = NULL, updated_at = ?, last_seq = ?"
        " WHERE id = ? AND project = ? AND (active_run_id IS NULL OR active_run_id = ?)",
        (d.status, e.time.isoformat(), seq, e.aggregate_id, e.project, d.run_id),
    )


async def thread_deleted(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    assert isinstance(e.data, ThreadDeleted)
    if not await _owned(db, e):
        return
    await db.execute("DELETE FROM thread_checkpoints WHERE thread_id = ?", (e.aggregate_id,))
    await db.execute("DELETE FROM threads WHERE id = ? AND project = ?", (e.aggregate_id, e.project))


HANDLERS: dict[str, Handler] = {
    ThreadCreated.TYPE: thread_created,
    ThreadRunAccepted.TYPE: run_accepted,
    ThreadCheckpointed.TYPE: checkpointed,
    ThreadRunEnded.TYPE: run_ended,
    ThreadDeleted.TYPE: thread_deleted,
}
