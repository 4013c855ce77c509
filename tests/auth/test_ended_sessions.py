"""Signed-out console sessions across gateways: one gateway signs a session out, every gateway
refuses it (also one started later), with nothing but the gateway's own NATS permissions."""

from __future__ import annotations

import asyncio
import time

import pytest

from crewyard.auth.sessions import EndedSessions
from crewyard.core.sessions import SessionCodec

from .conftest import Streams

pytestmark = pytest.mark.timeout(120)


async def _gateway(streams: Streams) -> EndedSessions:
    ended = EndedSessions(await streams.store("gateway"))
    await ended.start()
    return ended


async def _close(*gateways: EndedSessions) -> None:
    for g in gateways:
        await g.stop()
        await g.store.nc.drain()


async def test_a_session_signed_out_on_one_gateway_is_refused_by_every_gateway(streams: Streams):
    codec = SessionCodec(b"s" * 32)
    _, session = codec.issue("key_1", time.time())
    _, other = codec.issue("key_1", time.time())
    first, second = await _gateway(streams), await _gateway(streams)
    try:
        assert not first.ended(session) and not second.ended(session)
        await first.end(session)
        assert first.ended(session)  # at once where it was signed out
        deadline = time.monotonic() + 10
        while not second.ended(session):
            assert time.monotonic() < deadline, "the sign-out never reached the other gateway"
            await asyncio.sleep(0.005)
        assert not second.ended(other)  # another session of the same key lives on
        later = await _gateway(streams)
        try:
            assert later.ended(session) and not later.ended(other)
        finally:
            await _close(later)
    finally:
        await _close(first, second)


async def test_a_gateway_whose_first_read_times_out_tries_again_and_starts(
    streams: Streams, monkeypatch: pytest.MonkeyPatch
):
    # A stream electing its leader, or a broker on a loaded machine, may miss one deadline.
    codec = SessionCodec(b"s" * 32)
    _, session = codec.issue("key_1", time.time())
    first = await _gateway(streams)
    await first.end(session)
    real, tries = EndedSessions._read_all, []

    async def slow_once(self: EndedSessions):  # type: ignore[no-untyped-def]
        tries.append(1)
        if len(tries) == 1:
            await real(self)  # a watcher was opened: it must be stopped before the next try
            raise TimeoutError
        return await real(self)

    monkeypatch.setattr(EndedSessions, "_read_all", slow_once)
    monkeypatch.setattr(asyncio, "sleep", _no_pause)
    later = await _gateway(streams)
    try:
        assert len(tries) == 2 and later.ended(session)
    finally:
        await _close(first, later)


_real_sleep = asyncio.sleep


async def _no_pause(delay: float, *args: object) -> object:
    return await _real_sleep(min(delay, 0.01), *args)
