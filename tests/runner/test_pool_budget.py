"""Fork servers and the warm sandboxes' memory budget: least recently used pools give room, a
server that would not fit is not started again, one that dies or is retired is replaced; and
the settings that bound it all."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from pool_helpers import KEY, idle, offer, pools_of, template, until

from crewyard.runner.backends import ProcessBackend
from crewyard.runner.backends._forkserver import ForkedHandle
from crewyard.runner.pools import PoolKey, Pools
from crewyard.runner.warm import WarmSandbox

pytestmark = pytest.mark.timeout(180)


async def _sample(pools: Pools, seen: list[int]) -> None:
    """Measured memory of every idle sandbox and fork server, again and again."""
    while True:
        total = 0
        for pool in list(pools.pools.values()):
            server = [pool.server] if isinstance(pool.server, WarmSandbox) else []
            for sandbox in [*pool.idle, *server]:
                total += await sandbox.measure() or 0
        seen.append(total)
        await asyncio.sleep(0.05)


async def test_pools_stay_within_their_memory_budget_evicting_the_least_recently_used(tmp_path: Path) -> None:
    # Measure what one sandbox holds, then allow room for about three (sandboxes started one by
    # one: forked ones hold little of their own, see the next test).
    async with pools_of(tmp_path, forking=False) as pools:
        offer(pools, template(tmp_path), "fp")
        await until(lambda: len(idle(pools)) == 1 and idle(pools)[0].memory is not None, "a measured sandbox")
        one = idle(pools)[0].memory
    assert one is not None and one > 0
    budget = int(one * 3.5)
    older, newer = PoolKey("dep_older", "production"), PoolKey("dep_newer", "production")
    spec = template(tmp_path, memory=budget // 2)  # counted at its limit until measured
    async with pools_of(tmp_path, forking=False, budget=budget) as pools:
        seen: list[int] = []
        sampler = asyncio.create_task(_sample(pools, seen))
        offer(pools, spec, "fp", low=3, high=3, key=older)
        await until(lambda: len(idle(pools, older)) >= 2, "the older pool to fill")
        await asyncio.sleep(0.1)
        offer(pools, spec, "fp", low=3, high=3, key=newer)  # used more recently: it gets the room
        await until(lambda: len(idle(pools, newer)) == 3, "the newer pool to fill")
        assert len(idle(pools, older)) <= 1
        sampler.cancel()
        assert seen and max(seen) <= budget, (seen, budget)


async def test_a_fork_server_goes_too_when_its_pool_is_over_the_budget_and_does_not_come_back(
    tmp_path: Path,
) -> None:
    async with pools_of(tmp_path, forking=True) as pools:
        offer(pools, template(tmp_path), "fp")
        pool = pools.pools[KEY]
        await until(lambda: len(idle(pools)) == 1 and idle(pools)[0].memory is not None, "a measured fork")
        server, fork = pool.server, idle(pools)[0].memory
        assert isinstance(server, WarmSandbox) and server.memory is not None and fork
        # Room for the server alone: its idle fork goes first, the server stays.
        pools.budget = server.memory + fork // 2
        pools._wake.set()
        await until(lambda: not idle(pools), "the idle fork evicted")
        assert pool.server is server and pools.can_fork(KEY, "fp")
        # Room for less than the server: it goes as well, and is not started again while it
        # would not fit (each start would import the crew only to be evicted).
        pools.budget = server.memory // 2
        pools._wake.set()
        await until(lambda: pool.server is None, "the fork server evicted")
        await asyncio.wait_for(server.ended(), 30)
        for _ in range(3):  # maintenance passes, made here (not waited for: they must have run)
            pools._fit()
            pools._refill()
            await asyncio.sleep(0.1)
            assert pool.server is None and not pool.warming and not idle(pools)
            assert pools.held() <= pools.budget


async def test_a_newer_pool_gets_room_by_evicting_an_older_pools_fork_server(tmp_path: Path) -> None:
    async with pools_of(tmp_path, forking=True) as pools:  # what one fork server holds
        offer(pools, template(tmp_path), "fp")
        await until(
            lambda: pools.can_fork(KEY, "fp") and pools.pools[KEY].server_memory is not None,
            "a measured server",
        )
        one = pools.pools[KEY].server_memory
    assert one is not None and one > 0
    older, newer = PoolKey("dep_older", "production"), PoolKey("dep_newer", "production")
    spec = template(tmp_path, memory=one)  # a sandbox is counted as one server until measured
    async with pools_of(tmp_path, forking=True, budget=int(one * 1.5)) as pools:
        seen: list[int] = []
        sampler = asyncio.create_task(_sample(pools, seen))
        offer(pools, spec, "fp", key=older)
        await until(lambda: pools.can_fork(older, "fp"), "the older pool's fork server")
        first = pools.pools[older].server
        assert isinstance(first, WarmSandbox)
        await asyncio.sleep(0.1)
        offer(pools, spec, "fp", key=newer)  # used more recently: it gets the room
        await until(lambda: pools.can_fork(newer, "fp"), "the newer pool's fork server")
        assert pools.pools[older].server is None
        await asyncio.wait_for(first.ended(), 30)
        for _ in range(3):  # the older pool does not take the room back while it is not used
            pools._fit()
            pools._refill()
            await asyncio.sleep(0.1)
            assert pools.pools[older].server is None and pools.can_fork(newer, "fp")
        sampler.cancel()
        assert seen and max(seen) <= pools.budget, (seen, pools.budget)


async def test_a_server_that_cannot_fit_evicts_nothing(tmp_path: Path) -> None:
    # A newer pool whose server was seen to hold more than the whole budget: evicting the older
    # pool's server would not make room for it, so that server stays (it is not evicted and
    # started again on every pass).
    older, newer = PoolKey("dep_older", "production"), PoolKey("dep_newer", "production")
    async with pools_of(tmp_path, forking=True) as pools:
        offer(pools, template(tmp_path), "fp", key=older)
        await until(
            lambda: pools.can_fork(older, "fp") and pools.pools[older].server_memory is not None, "a server"
        )
        first = pools.pools[older].server
        one = pools.pools[older].server_memory
        assert isinstance(first, WarmSandbox) and one is not None
        pools.budget = int(one * 1.5)
        await asyncio.sleep(0.1)
        offer(pools, template(tmp_path), "fp", key=newer)
        pools.pools[newer].server_memory = pools.budget + 1
        for _ in range(4):  # maintenance passes, made here (not waited for: they must have run)
            pools._fit()
            pools._refill()
            await asyncio.sleep(0.1)
            assert pools.pools[older].server is first and first.usable
            assert pools.pools[newer].server is None and not pools.pools[newer].warming


async def test_a_server_retired_while_it_imports_does_not_turn_forking_off(tmp_path: Path) -> None:
    async with pools_of(tmp_path, forking=True) as pools:
        slow = template(tmp_path, {"IMPORT_S": "3"})
        offer(pools, slow, "fp")
        pool = pools.pools[KEY]
        await until(lambda: isinstance(pool.server, WarmSandbox), "a server importing")
        importing = pool.server
        assert isinstance(importing, WarmSandbox) and not importing.usable
        pools.retire("tests", "an environment variable changed")
        await asyncio.wait_for(importing.ended(), 30)
        offer(pools, template(tmp_path), "fp2")  # the renewed template
        await until(lambda: pools.can_fork(KEY, "fp2"), "a new fork server")
        assert pool.forking and pool.failures == 0


def test_settings_bound_warm_sandboxes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from crewyard import settings

    assert settings.load(tmp_path).warm_memory_bytes == 2 << 30
    for var, value in (("CREWYARD_WARM", "9"), ("CREWYARD_WARM_MEMORY", "lots"), ("CREWYARD_WARM_IDLE", "0")):
        monkeypatch.setenv(var, value)
        with pytest.raises(settings.SettingsError, match=var):
            settings.load(tmp_path)
        monkeypatch.delenv(var)
    monkeypatch.setenv("CREWYARD_WARM_MEMORY", "0")
    assert settings.load(tmp_path).warm_memory_bytes == 0


def test_warm_sandboxes_are_off_without_a_budget(tmp_path: Path) -> None:
    pools = Pools(ProcessBackend(), work_dir=tmp_path, budget=0, idle_s=60)
    offer(pools, template(tmp_path), "fp")
    assert pools.pools == {} and pools.take(KEY, "fp") is None


async def test_a_fork_server_that_dies_leaves_runs_cold_until_another_is_ready(tmp_path: Path) -> None:
    async with pools_of(tmp_path, forking=True) as pools:
        offer(pools, template(tmp_path, {"COLOR": "red"}), "fp")
        await until(lambda: pools.can_fork(KEY, "fp"), "a ready fork server")
        pool = pools.pools[KEY]
        first = pool.server
        assert isinstance(first, WarmSandbox)
        await first.handle.kill(0)  # a crash, the kernel's OOM killer
        await until(lambda: pool.server is not first and pool.failures >= 1, "the server given up")
        assert not pools.can_fork(KEY, "fp")
        assert await pools.fork(KEY, "fp", template(tmp_path)) is None  # the run starts cold
        pool.retry_at = 0.0  # the pause is over
        pools._wake.set()
        await until(lambda: pools.can_fork(KEY, "fp"), "a new fork server")
        spec = template(tmp_path)
        handle = await pools.fork(KEY, "fp", spec)
        assert isinstance(handle, ForkedHandle)
        lines = [json.loads(raw) async for stream, raw in handle.output() if stream == "proto"]
        await handle.wait()
        await handle.remove()
        assert lines[-1]["output"]["color"] == "red" and lines[-1]["output"]["run_id"] == spec.run_id
