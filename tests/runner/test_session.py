"""What a crew may ask of the platform (the runner's answers to ``request`` lines), against a real
event store and object store: tables of its own project only, arguments checked, large arguments
in pieces, a thread run's state read and left."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import msgspec

from crewyard.core import run_state as rs
from crewyard.core import subjects
from crewyard.core import threads as core
from crewyard.core.events import (
    NewRow,
    RowsInserted,
    RunCompleted,
    TableCreated,
    ThreadCheckpointed,
    ThreadCreated,
    ThreadRunEnded,
    make_event,
)
from crewyard.core.ids import new_id
from crewyard.core.tables import Column
from crewyard.eventstore import EventStore
from crewyard.objects import NatsObjectStore, ObjectStore
from crewyard.runner import session as session_module
from crewyard.runner.protocol import Request, encode
from crewyard.runner.session import RunSession
from crewyard.threads import (
    accept_run,
    checkpoint_content,
    checkpoint_event,
    checkpoint_object,
    latest_checkpoint,
    load_thread,
)


async def _table(store: EventStore, project: str, name: str) -> str:
    table_id = new_id("tbl")
    created = TableCreated(name=name, columns=[Column(name="n", type="number", required=True)])
    await store.append(make_event(created, project=project, aggregate_id=table_id, event_id=new_id("evt")))
    rows = RowsInserted(rows=[NewRow(id=new_id("row"), values={"n": 1})])
    await store.append(make_event(rows, project=project, aggregate_id=table_id, event_id=new_id("evt")))
    return table_id


def _session(store: EventStore, tmp_path: Path, project: str = "mine") -> RunSession:
    state = rs.RunState(run_id=new_id("run"), project=project, status=rs.RUNNING)
    return RunSession(store, NatsObjectStore(store.nc, store.settings.object_bucket), state, "python")


async def _ask(session: RunSession, op: str, args: dict) -> msgspec.Struct:
    return await session.serve(Request(id="r1", op=op, args=args))


async def test_a_run_reads_and_writes_its_own_projects_tables_only(store: EventStore, tmp_path: Path):
    mine = await _table(store, "mine", "numbers")
    theirs = await _table(store, "theirs", "numbers")
    session = _session(store, tmp_path)
    try:
        page = await _ask(session, "table.query", {"table": "numbers", "filter": ["n:gte:1"]})
        assert page.ok and page.value["total"] == 1
        inserted = await _ask(session, "table.insert", {"table": mine, "rows": [{"n": 2}, {"n": 3}]})
        assert (
            inserted.ok
            and [r["_meta"]["created_by"] for r in inserted.value] == [f"run:{session.run.run_id}"] * 2
        )
        assert (await _ask(session, "table.query", {"table": mine, "sort": ["-n"], "limit": 1})).value[
            "rows"
        ][0]["n"] == 3
        other = await _ask(session, "table.query", {"table": theirs})
        assert not other.ok and other.error.code == "not_found"
        bad = await _ask(session, "table.insert", {"table": mine, "rows": [{"n": "two"}]})
        assert not bad.ok and bad.error.code == "invalid" and "'n'" in bad.error.message
        for args in ({"table": 5}, {"table": mine, "limit": 10_000}, {"table": mine, "filter": "n:eq:1"}):
            refused = await _ask(session, "table.query", args)
            assert not refused.ok and refused.error.code == "invalid", args
        nothing = await _ask(session, "thread.get", {})
        assert not nothing.ok and nothing.error.code == "invalid"  # not a thread run
        unknown = await _ask(session, "deployment.delete", {})
        assert not unknown.ok and unknown.error.code == "unknown_op"
    finally:
        await session.close()


async def test_large_arguments_arrive_in_pieces_within_a_bound(store: EventStore, tmp_path: Path):
    table_id = await _table(store, "mine", "numbers")
    session = _session(store, tmp_path)
    try:
        text = msgspec.json.encode({"table": table_id, "rows": [{"n": i} for i in range(50)]}).decode()
        for start in range(0, len(text), 100):
            assert (await _ask(session, "blob.append", {"blob": "b1", "data": text[start : start + 100]})).ok
        stored = await _ask(session, "table.insert", {"$blob": "b1"})
        assert stored.ok and len(stored.value) == 50
        missing = await _ask(session, "table.insert", {"$blob": "b1"})  # used up
        assert not missing.ok and missing.error.code == "invalid"
        session._blob_bytes = 32 * 1024 * 1024  # as if the run had sent that much already
        over = await _ask(session, "blob.append", {"blob": "b2", "data": "x"})
        assert not over.ok and over.error.code == "too_large"
    finally:
        await session.close()


async def _thread(store: EventStore) -> str:
    thread_id = new_id("thr")
    await store.append(
        make_event(ThreadCreated(), project="mine", aggregate_id=thread_id, event_id=new_id("evt"))
    )
    return thread_id


async def _running(store: EventStore, thread_id: str) -> RunSession:
    """The session of a new run of the thread, which is busy with it (as a runner holds it)."""
    run_id = new_id("run")
    await accept_run(store, (await load_thread(store, thread_id, "mine"))[0], run_id)
    state = rs.RunState(run_id=run_id, project="mine", status=rs.RUNNING, thread_id=thread_id)
    return RunSession(store, NatsObjectStore(store.nc, store.settings.object_bucket), state, "python")


async def test_large_interrupts_stay_in_the_stored_checkpoint_and_the_thread_reads_interrupted(
    store: EventStore,
):
    thread_id = await _thread(store)
    session = await _running(store, thread_id)
    run_id = session.run.run_id
    asked = [{"value": {"question": "Send this?", "draft": "x" * 1_000_000}}]
    try:
        fresh = msgspec.json.decode(encode(await _ask(session, "thread.get", {})))["value"]
        assert fresh["values"] == {} and not fresh["interrupted"] and fresh["checkpoint"] is None
        saved = await _ask(session, "thread.save", {"values": {"n": 1}, "interrupts": asked})
        assert saved.ok
        done = RunCompleted(output={"ok": True})
        assert await session.conclude(done) == done
    finally:
        await session.close()
    filt = subjects.aggregate_filter("mine", "thread", thread_id, store.prefix)
    written = await store.load_raw(filt[:-1] + "thread.checkpointed")
    # The event refers to the stored checkpoint and only counts the interrupts it holds.
    assert len(written) == 1 and len(written[0].data) < 16 * 1024
    event = written[0].decode(store.prefix).event.data
    assert isinstance(event, ThreadCheckpointed) and event.ref is not None
    assert event.interrupts == [] and event.interrupt_count == 1 and event.interrupted
    state, records = await load_thread(store, thread_id, "mine")
    assert state.checkpoint_interrupted
    ended = core.decide_settle(state, run_id, "succeeded")
    assert ended is not None and ended.status == "interrupted"
    latest = await latest_checkpoint(store, state, records)
    assert latest is not None
    assert (await checkpoint_content(session.objects, latest))[2] == asked


class CountedReads:
    """The object store, counting the objects read from it."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner, self.reads = inner, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def get_bytes(self, name: str) -> bytes:
        self.reads += 1
        return await self.inner.get_bytes(name)


async def _checkpoint(
    store: EventStore, objects: ObjectStore, thread_id: str, run_id: str, values: dict
) -> str:
    written = await checkpoint_event(
        objects,
        run_id=run_id,
        values=values,
        checkpoint=None,
        interrupts=[{"value": "Send this?"}],
        framework="python",
        parent_checkpoint_id=None,
    )
    await store.append(make_event(written, project="mine", aggregate_id=thread_id, event_id=new_id("evt")))
    return written.checkpoint_id


async def test_a_thread_state_asked_for_many_times_at_once_is_read_once(store: EventStore):
    thread_id = await _thread(store)
    objects = CountedReads(NatsObjectStore(store.nc, store.settings.object_bucket))
    # The state the run starts from: the previous run's, large enough for the object store.
    previous = await _running(store, thread_id)
    before = {"history": ["x" * 1000] * 500}
    started_from = await _checkpoint(store, objects, thread_id, previous.run.run_id, before)
    ended = ThreadRunEnded(run_id=previous.run.run_id, status="interrupted")
    await store.append(make_event(ended, project="mine", aggregate_id=thread_id, event_id=new_id("evt")))
    # This run is retried: its earlier attempt left a checkpoint, which this attempt never starts from.
    session = await _running(store, thread_id)
    await _checkpoint(store, objects, thread_id, session.run.run_id, {"attempt": 1})
    session.objects = objects
    try:
        replies = await asyncio.gather(*(_ask(session, "thread.get", {}) for _ in range(16)))
        assert objects.reads == 1
        for reply in replies:  # each as the crew reads it
            answer = msgspec.json.decode(encode(reply))
            assert answer["ok"] and answer["value"]["values"] == before and answer["value"]["interrupted"]
            assert answer["value"]["interrupts"] == [{"value": "Send this?"}]
        assert (await _ask(session, "thread.save", {"values": {"attempt": 2}})).ok
        done = RunCompleted(output={})
        assert await session.conclude(done) == done
    finally:
        await session.close()
    state, records = await load_thread(store, thread_id, "mine")
    latest = await latest_checkpoint(store, state, records)
    assert isinstance(latest, ThreadCheckpointed) and latest.parent_checkpoint_id == started_from


async def test_a_stored_state_that_does_not_decode_is_never_read_as_an_empty_one(store: EventStore):
    """A run must not start from an empty state in place of one it cannot read: its own
    checkpoint would follow the lost one and become the thread's state."""
    thread_id = await _thread(store)
    objects = NatsObjectStore(store.nc, store.settings.object_bucket)
    previous = await _running(store, thread_id)
    await _checkpoint(store, objects, thread_id, previous.run.run_id, {"history": ["x" * 1000] * 500})
    ended = ThreadRunEnded(run_id=previous.run.run_id, status="idle")
    await store.append(make_event(ended, project="mine", aggregate_id=thread_id, event_id=new_id("evt")))
    state, records = await load_thread(store, thread_id, "mine")
    latest = await latest_checkpoint(store, state, records)
    assert latest is not None and latest.ref is not None
    await objects.put_bytes(checkpoint_object(latest.ref.sha256), b'{"values": {"history": ["x", ')
    session = await _running(store, thread_id)
    try:
        reply = await _ask(session, "thread.get", {})
        assert not reply.ok, reply
    finally:
        await session.close()


_blob_ids = itertools.count()


async def _in_pieces(session: RunSession, op: str, text: str) -> Any:
    """``op`` with arguments ``text`` sent in pieces, as a runtime sends long ones."""
    blob = f"b{next(_blob_ids)}"
    for start in range(0, len(text), 1 << 20):
        assert (
            await _ask(session, "blob.append", {"blob": blob, "data": text[start : start + (1 << 20)]})
        ).ok
    return await _ask(session, op, {"$blob": blob})


async def test_arguments_in_pieces_are_refused_before_decoding_beyond_what_their_op_may_carry(
    store: EventStore,
):
    table_id = await _table(store, "mine", "numbers")
    session = await _running(store, await _thread(store))
    try:
        # Longer than any table operation's arguments (a million rows, where an insert takes 100).
        rows = await _in_pieces(
            session, "table.insert", f'{{"table": "{table_id}", "rows": [{"{}, " * 10**6}{{}}]}}'
        )
        assert not rows.ok and rows.error.code == "too_large", rows
        # A state short enough, but of more values than it may make as Python objects.
        many = await _in_pieces(
            session, "thread.save", f'{{"values": {{"items": [{"{}, " * 1_100_000}{{}}]}}}}'
        )
        assert not many.ok and many.error.code == "too_large" and "JSON values" in many.error.message
        # A long state of prose, commas and colons within the bound, is kept.
        prose = msgspec.json.encode({"values": {"notes": "Yes, sure: fine. " * 300_000}}).decode()
        assert (await _in_pieces(session, "thread.save", prose)).ok
    finally:
        await session.close()
    session = await _running(store, await _thread(store))
    try:  # a state the next run's thread.get could not answer with
        huge = msgspec.json.encode({"values": {"text": "x" * (31 << 20)}}).decode()
        refused = await _in_pieces(session, "thread.save", huge)
        assert not refused.ok and refused.error.code == "too_large", refused
    finally:
        await session.close()


async def test_a_state_is_bounded_in_bytes_however_it_is_sent(store: EventStore, monkeypatch: Any) -> None:
    """Text of many-byte characters (an emoji is one character, four bytes) was counted in
    characters: a state under the bound in characters but four times it in bytes was saved, and
    the next run's ``thread.get`` could never answer with it. In pieces or inline, it is bytes."""
    monkeypatch.setattr(session_module, "MAX_STATE_BYTES", 4000)
    session = await _running(store, await _thread(store))
    try:
        wide = {"values": {"text": "\U0001f600" * 1500}}  # 1,500 characters, 6,000 bytes
        in_pieces = await _in_pieces(session, "thread.save", msgspec.json.encode(wide).decode())
        assert not in_pieces.ok and in_pieces.error.code == "too_large", in_pieces  # type: ignore[attr-defined]
        inline = await _ask(session, "thread.save", wide)
        assert not inline.ok and inline.error.code == "too_large", inline  # type: ignore[attr-defined]
        narrow = {"values": {"text": "x" * 1500}}
        assert (await _ask(session, "thread.save", narrow)).ok  # type: ignore[attr-defined]
    finally:
        await session.close()
