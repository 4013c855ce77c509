"""Interrupts too large for a checkpoint's event stay in the stored checkpoint (the event counts
them): the thread still reads as interrupted, and so does a copy of it; its history shows the
interrupts, read back from the object store. A real event store, object store and read model,
kept by the projector's own handlers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from handler_calls import handler_request

from crewyard.contract.threads import Thread, ThreadHistory
from crewyard.core.events import ThreadCreated, ThreadRunEnded
from crewyard.core.ids import new_id
from crewyard.eventstore import EventStore
from crewyard.gateway.context import Gateway
from crewyard.gateway.threads import checkpoints, copy_thread
from crewyard.objects import NatsObjectStore
from crewyard.projector.handlers import HANDLERS
from crewyard.readmodel import ReadModel
from crewyard.threads import accept_run, checkpoint_event, load_thread

ASKED = [{"value": {"question": "Send this?", "draft": "x" * 100_000}}]


class Projected:
    """The read model, caught up with the project's thread events whenever the gateway waits."""

    def __init__(self, store: EventStore, rm: ReadModel) -> None:
        self.store, self.rm, self.position = store, rm, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.rm, name)

    async def wait_for(self, seq: int, timeout: float = 5.0) -> bool:
        for raw in await self.store.load_raw(f"{self.store.prefix}.shop.thread.>", self.position + 1):
            rec = raw.decode(self.store.prefix)
            await HANDLERS[rec.event.type](self.rm.db, rec.seq, rec.event)
            self.position = rec.seq
        return True


@pytest.fixture
async def gateway(store: EventStore, tmp_path: Path) -> AsyncIterator[Gateway]:
    rm = await ReadModel.open(tmp_path / "rm.sqlite3")
    g = object.__new__(Gateway)
    g.store = store
    g.objects = NatsObjectStore(store.nc, store.settings.object_bucket)
    g.rm = Projected(store, rm)  # type: ignore[assignment]
    yield g
    await rm.close()


async def _interrupted_thread(g: Gateway) -> str:
    """A thread whose run left a stored checkpoint with large interrupts, and ended."""
    thread_id, run_id = new_id("thr"), new_id("run")
    await g.commit_payload(ThreadCreated(), "shop", thread_id, 0)
    await accept_run(g.store, (await load_thread(g.store, thread_id, "shop"))[0], run_id)
    checkpointed = await checkpoint_event(
        g.objects,
        run_id=run_id,
        values={"draft": "y" * 300_000},
        checkpoint=None,
        interrupts=ASKED,
        framework="langgraph",
        parent_checkpoint_id=None,
    )
    assert checkpointed.ref is not None and checkpointed.interrupt_count == 1
    await g.commit_payload(checkpointed, "shop", thread_id, None)
    await g.commit_payload(ThreadRunEnded(run_id=run_id, status="interrupted"), "shop", thread_id, None)
    return thread_id


async def _history(g: Gateway, thread_id: str) -> ThreadHistory:
    """A page as the API sends it (stored JSON kept as it is), read back as a client does."""
    view = await checkpoints(g, thread_id, limit=5, offset=0)
    return msgspec.json.decode(msgspec.json.encode(view), type=ThreadHistory)


async def test_a_thread_whose_interrupts_were_stored_reads_and_copies_as_interrupted(gateway: Gateway):
    thread_id = await _interrupted_thread(gateway)
    page = await _history(gateway, thread_id)
    assert [c.interrupts for c in page.history] == [ASKED]

    answer = await copy_thread.fn(handler_request(gateway), thread_id, None)
    copy = msgspec.json.decode(answer.body, type=Thread)
    assert copy.status == "interrupted"
    state, _ = await load_thread(gateway.store, copy.thread_id, "shop")
    assert state.status == "interrupted" and state.checkpoint_interrupted
    copied = await _history(gateway, copy.thread_id)
    assert [c.interrupts for c in copied.history] == [ASKED]
