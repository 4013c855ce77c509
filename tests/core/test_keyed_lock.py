"""KeyedLock: one holder per key at a time, first come first served, other keys free, and no key
kept once nobody holds or awaits it (after a release, an error, or a cancelled wait)."""

from __future__ import annotations

import asyncio

import pytest

from crewyard.keyedlock import KeyedLock


async def test_one_holder_per_key_served_in_arrival_order() -> None:
    locks, order, inside = KeyedLock(), [], []

    async def work(name: str, started: asyncio.Event) -> None:
        started.set()
        async with locks.hold("env-a"):
            inside.append(name)
            assert len(inside) == 1, f"{inside} hold env-a together"
            await asyncio.sleep(0.01)
            order.append(name)
            inside.remove(name)

    tasks = []
    for name in ("first", "second", "third"):
        started = asyncio.Event()
        tasks.append(asyncio.create_task(work(name, started)))
        await started.wait()
    await asyncio.gather(*tasks)
    assert order == ["first", "second", "third"]
    assert len(locks) == 0


async def test_other_keys_do_not_wait() -> None:
    locks = KeyedLock()
    # While env-a is held, env-b is taken at once (a timeout would mean it waited on env-a).
    async with locks.hold("env-a"), asyncio.timeout(1), locks.hold("env-b"):
        assert len(locks) == 2
    assert len(locks) == 0


async def test_an_error_in_the_block_releases_the_key() -> None:
    locks = KeyedLock()
    with pytest.raises(RuntimeError):
        async with locks.hold("env-a"):
            raise RuntimeError("the build failed")
    assert len(locks) == 0
    async with asyncio.timeout(1), locks.hold("env-a"):
        pass


async def test_a_cancelled_waiter_leaves_no_key_behind() -> None:
    locks = KeyedLock()
    holding, release = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        async with locks.hold("run-1"):
            holding.set()
            await release.wait()

    async def waiter() -> None:
        async with locks.hold("run-1"):
            raise AssertionError("a cancelled waiter must never get the lock")

    first = asyncio.create_task(holder())
    await holding.wait()
    second = asyncio.create_task(waiter())
    await asyncio.sleep(0)  # the waiter is queued on run-1
    assert len(locks) == 1
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    release.set()
    await first
    assert len(locks) == 0
