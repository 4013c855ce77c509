"""What a run's requests may hold of the runner at once. A crew may have sixteen requests in
flight and need not read its stdin: replies are encoded one at a time, when their turn to be sent
comes (sixteen of 32 MiB, encoded and waiting, held 512 MB), and arguments sent in pieces are
decoded and used one request at a time (twelve table inserts of 2.5 MiB each at once held 680 MB
as Python objects)."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from crewyard.core import run_state as rs
from crewyard.core.ids import new_id
from crewyard.eventstore import EventStore
from crewyard.objects import NatsObjectStore
from crewyard.runner import output
from crewyard.runner.protocol import Reply, Request
from crewyard.runner.session import RunSession


class StalledStdin:
    """A run whose crew does not read its stdin: the first reply's write never ends."""

    def __init__(self) -> None:
        self.sent = 0
        self.release = asyncio.Event()

    async def send(self, line: bytes) -> None:
        self.sent += 1
        await self.release.wait()


async def test_replies_are_encoded_one_at_a_time_when_their_turn_comes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    encoded = 0
    real = output.encode

    def counted(message: Any) -> bytes:
        nonlocal encoded
        encoded += 1
        return real(message)

    monkeypatch.setattr(output, "encode", counted)
    handle: Any = StalledStdin()

    async def serve(msg: Request) -> Reply:
        return Reply(id=msg.id, ok=True, value=msgspec.Raw(b'"a large state"'))

    replies: set[asyncio.Task[None]] = set()
    sending = asyncio.Lock()
    for n in range(8):
        await output._request(handle, Request(id=f"r{n}", op="thread.get", args={}), serve, replies, sending)
    for _ in range(20):
        await asyncio.sleep(0)
    assert (encoded, handle.sent) == (1, 1)  # the others wait, not encoded
    handle.release.set()
    await asyncio.gather(*replies)
    assert (encoded, handle.sent) == (8, 8)


async def test_arguments_in_pieces_are_decoded_one_request_at_a_time(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = rs.RunState(run_id=new_id("run"), project="p", status=rs.RUNNING)
    session = RunSession(store, NatsObjectStore(store.nc, store.settings.object_bucket), state, "python")
    decoding = most = 0
    release = asyncio.Event()
    real_take = RunSession._take_blob

    def take(self: RunSession, blob: Any, limit: int) -> dict[str, Any]:
        nonlocal decoding, most
        decoding += 1
        most = max(most, decoding)
        return real_take(self, blob, limit)

    async def op(self: RunSession, name: str, args: dict[str, Any]) -> Any:
        nonlocal decoding
        await release.wait()  # a table operation that takes its time
        decoding -= 1
        return None

    monkeypatch.setattr(RunSession, "_take_blob", take)
    monkeypatch.setattr(RunSession, "_op", op)
    try:
        for n in range(4):
            piece = Request(id=f"p{n}", op="blob.append", args={"blob": f"b{n}", "data": '{"table": "t"}'})
            assert (await session.serve(piece)).ok
        asked = [
            asyncio.create_task(session.serve(Request(id=f"r{n}", op="table.get", args={"$blob": f"b{n}"})))
            for n in range(4)
        ]
        for _ in range(20):
            await asyncio.sleep(0)
        assert decoding == 1
        release.set()
        assert all(r.ok for r in await asyncio.gather(*asked))
        assert most == 1
    finally:
        await session.close()
