"""Pools of warm sandboxes on the process backend: ready ahead of runs, one run each, always as
fresh as the run that takes one, within their memory budget, and gone when idle or stopped.

Each test runs twice: with sandboxes forked from the pool's fork server (what the process backend
does) and started one by one (what backends that cannot fork do)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import crewyard_runtime
from crewyard.core.events import DeploymentPromoted, EnvUnset, Payload, make_event
from crewyard.core.ids import new_id
from crewyard.eventstore import EventStore
from crewyard.runner import pools as pools_module
from crewyard.runner.backends import Limits, ProcessBackend, RunSpec
from crewyard.runner.backends._forkserver import ForkedHandle
from crewyard.runner.changes import follow_changes
from crewyard.runner.pools import Pool, PoolKey, Pools, Renewal
from crewyard.runner.warm import WarmSandbox
from crewyard.testing.processes import alive

RUNTIME = Path(crewyard_runtime.__file__).resolve().parents[1]
KEY = PoolKey("dep_pools", "production")
CREW = """
import os, pathlib, time
IMPORTED = time.time()
if os.environ.get("FAIL_AT_IMPORT"):
    raise RuntimeError("cannot import: " + os.environ["FAIL_AT_IMPORT"])
time.sleep(float(os.environ.get("IMPORT_S", "0")))
def run(inputs):
    here = pathlib.Path(".")
    found = sorted(p.name for p in here.iterdir())
    (here / "mine.txt").write_text(inputs.get("write", ""))
    return {"pid": os.getpid(), "imported": IMPORTED, "color": os.environ.get("COLOR"),
            "run_id": os.environ.get("CREWYARD_RUN_ID"), "found": found, "input": inputs}
"""

pytestmark = pytest.mark.timeout(180)


def template(tmp_path: Path, env: dict[str, str] | None = None, memory: int = 256 << 20) -> RunSpec:
    source = tmp_path / "src"
    source.mkdir(exist_ok=True)
    (source / "crew.py").write_text(textwrap.dedent(CREW))
    return RunSpec(
        run_id="run_template",
        project="tests",
        deployment_id=KEY.deployment_id,
        runner_id="test-runner",
        framework="python",
        entrypoint="crew:run",
        input={},
        env=env or {},
        source_dir=source,
        runtime_dir=RUNTIME,
        venv_dir=Path(sys.prefix),
        work_dir=tmp_path / "template",
        artifacts_dir=tmp_path / "template" / "artifacts",
        limits=Limits(memory_bytes=memory),
    )


async def until(condition: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class OneByOne(ProcessBackend):
    """The process backend as a backend that cannot fork: every sandbox started on its own."""

    start_server = None  # type: ignore[assignment]


@pytest.fixture(autouse=True, params=["forked", "one-by-one"])
def mode(request: pytest.FixtureRequest) -> Iterator[str]:
    global MODE
    MODE = request.param
    yield MODE
    MODE = "forked"


MODE = "forked"


def sandbox_pids(sandbox: WarmSandbox) -> list[int]:
    """The sandbox's live processes: a forked one's keeper and run, else those of its run id."""
    if isinstance(sandbox.handle, ForkedHandle):
        return [p for p in (sandbox.handle.keeper, sandbox.handle.pid) if p is not None and alive(p)]
    needle = f"CREWYARD_RUN_ID={sandbox.spec.run_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
    return found


@contextlib.asynccontextmanager
async def pools_of(tmp_path: Path, forking: bool | None = None, **kwargs: Any) -> AsyncIterator[Pools]:
    kwargs.setdefault("budget", 8 << 30)
    kwargs.setdefault("idle_s", 600.0)
    forks = MODE == "forked" if forking is None else forking
    pools = Pools(ProcessBackend() if forks else OneByOne(), work_dir=tmp_path / "work", **kwargs)
    keeper = asyncio.create_task(pools.maintain())
    try:
        yield pools
    finally:
        keeper.cancel()
        await pools.close()


async def run_on(sandbox: WarmSandbox, run_id: str, input: dict[str, Any]) -> list[dict[str, Any]]:
    """Take the sandbox for a run and read its protocol lines to the end."""
    handle = sandbox.take(run_id, input)
    lines = []
    try:
        async for stream, raw in handle.output():
            if stream == "proto":
                lines.append(json.loads(raw))
        await asyncio.wait_for(handle.wait(), 60)
    finally:
        await handle.remove()
    return lines


def offer(
    pools: Pools, spec: RunSpec, fingerprint: str, low: int = 1, high: int = 2, key: PoolKey = KEY
) -> None:
    pools.offer(Renewal(key, spec, fingerprint), project="tests", name="default", low=low, high=high)


def idle(pools: Pools, key: PoolKey = KEY) -> list[WarmSandbox]:
    pool = pools.pools.get(key)
    return list(pool.idle) if pool else []


async def test_a_pool_keeps_sandboxes_ready_and_each_serves_exactly_one_run(tmp_path: Path) -> None:
    async with pools_of(tmp_path) as pools:
        offer(pools, template(tmp_path), "fp-1", low=2)
        await until(lambda: len(idle(pools)) == 2, "two ready sandboxes")
        first, second = pools.take(KEY, "fp-1"), pools.take(KEY, "fp-1")
        assert first is not None and second is not None and first is not second
        assert isinstance(first.handle, ForkedHandle) == (MODE == "forked")
        imported_before = time.time()

        out = await run_on(first, "run_one", {"write": "one"})
        assert [m["t"] for m in out][:2] == ["hello", "ready"]  # what it said while it waited
        result = out[-1]["output"]
        assert out[-1]["t"] == "result"
        assert result["run_id"] == "run_one" and result["input"] == {"write": "one"}
        assert result["imported"] < imported_before  # the crew was imported before the run came
        assert result["found"] == []  # an empty artifacts folder
        await until(lambda: not sandbox_pids(first), "the sandbox to end with its run")

        again = await run_on(second, "run_two", {})
        assert again[-1]["output"]["found"] == []  # nothing of the first run
        assert again[-1]["output"]["pid"] != result["pid"]
        await until(lambda: len(idle(pools)) == 2, "the pool to refill")


async def test_a_pool_refills_only_after_the_run_that_took_a_sandbox_got_going(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pause is long when a sandbox is started one by one (an interpreter importing the
    crew), short when it is forked from the pool's server; both keep it off the run's start."""
    monkeypatch.setattr(pools_module, "REFILL_AFTER_TAKE_S", 600.0)
    monkeypatch.setattr(pools_module, "REFILL_FORKED_AFTER_TAKE_S", 300.0)
    async with pools_of(tmp_path) as pools:
        offer(pools, template(tmp_path), "fp-1")
        await until(lambda: len(idle(pools)) == 1, "a ready sandbox")
        taken = pools.take(KEY, "fp-1")
        assert taken is not None
        pool = pools.pools[KEY]
        pause = pool.refill_at - time.monotonic()
        assert (250 < pause <= 300) if MODE == "forked" else (550 < pause <= 600)
        pools._refill()
        assert not pool.warming and not pool.idle  # nothing competes with the run's start
        await run_on(taken, "run_first", {})
        pool.refill_at = 0.0  # the pause is over
        pools._wake.set()
        await until(lambda: len(idle(pools)) == 1, "the pool to refill")


async def test_runs_faster_than_the_refill_pause_do_not_put_the_refill_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pools_module, "REFILL_AFTER_TAKE_S", 600.0)
    async with pools_of(tmp_path, forking=False) as pools:
        offer(pools, template(tmp_path), "fp-1", low=2)
        await until(lambda: len(idle(pools)) == 2, "two ready sandboxes")
        pool = pools.pools[KEY]
        first = pools.take(KEY, "fp-1")
        assert first is not None
        due = pool.refill_at
        second = pools.take(KEY, "fp-1")  # the next run, well within the pause
        assert second is not None and pool.refill_at == due  # the refill is not put off
        for sandbox in (first, second):
            await run_on(sandbox, f"run_{id(sandbox)}", {})


async def test_a_run_with_another_fingerprint_never_gets_an_older_sandbox(tmp_path: Path) -> None:
    async with pools_of(tmp_path) as pools:
        offer(pools, template(tmp_path, {"COLOR": "red"}), "red")
        await until(lambda: len(idle(pools)) == 1, "a ready sandbox")
        old = idle(pools)[0]

        assert pools.take(KEY, "blue") is None  # prepared with other values: the run starts cold
        await until(lambda: not sandbox_pids(old), "the stale sandbox to be removed")
        offer(pools, template(tmp_path, {"COLOR": "blue"}), "blue")  # the cold run's own spec
        await until(lambda: len(idle(pools)) == 1, "a sandbox with the new values")
        fresh = pools.take(KEY, "blue")
        assert fresh is not None
        out = await run_on(fresh, "run_blue", {})
        assert out[-1]["output"]["color"] == "blue"


async def test_a_retired_pool_renews_its_template_and_refills(tmp_path: Path) -> None:
    renewed: list[PoolKey] = []

    async def renew(pool: Pool) -> Renewal:
        renewed.append(pool.key)
        return Renewal(pool.key, template(tmp_path, {"COLOR": "green"}), "green")

    async with pools_of(tmp_path, renew=renew) as pools:
        offer(pools, template(tmp_path, {"COLOR": "red"}), "red")
        await until(lambda: len(idle(pools)) == 1, "a ready sandbox")
        old = idle(pools)[0]
        assert pools.retire("tests", "env.set") == 1
        assert idle(pools) == [] and pools.take(KEY, "red") is None
        await until(lambda: len(idle(pools)) == 1, "the renewed pool to refill")
        assert renewed == [KEY]
        await until(lambda: not sandbox_pids(old), "the retired sandbox to end")
        fresh = pools.take(KEY, "green")
        assert fresh is not None
        assert (await run_on(fresh, "run_green", {}))[-1]["output"]["color"] == "green"


async def test_an_idle_deployment_goes_back_to_zero(tmp_path: Path) -> None:
    async with pools_of(tmp_path, idle_s=1.0) as pools:
        offer(pools, template(tmp_path), "fp", low=2)
        await until(lambda: len(idle(pools)) == 2, "two ready sandboxes")
        sandboxes = idle(pools)
        await until(lambda: KEY not in pools.pools, "the pool to be emptied")
        await until(lambda: not any(sandbox_pids(s) for s in sandboxes), "its sandboxes to end")


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


async def test_a_crew_that_cannot_be_imported_leaves_its_runs_cold(tmp_path: Path) -> None:
    async with pools_of(tmp_path) as pools:
        offer(pools, template(tmp_path, {"FAIL_AT_IMPORT": "on purpose"}), "fp")
        pool = pools.pools[KEY]
        await until(lambda: pool.failures >= 1, "the warm-up to fail")
        assert pools.take(KEY, "fp") is None and pool.idle == [] and pool.retry_at > time.monotonic()


async def test_stopping_removes_every_sandbox_idle_or_warming(tmp_path: Path) -> None:
    async with pools_of(tmp_path) as pools:
        offer(pools, template(tmp_path), "fp", low=3, high=3)
        await until(lambda: len(idle(pools)) >= 1, "a ready sandbox")
        everything = [
            s for p in pools.pools.values() for s in (*p.idle, *p.warming) if isinstance(s, WarmSandbox)
        ]
    assert everything
    await until(lambda: not any(sandbox_pids(s) for s in everything), "the sandboxes to end")
    assert not any(s.spec.work_dir.exists() for s in everything)


async def test_a_sandbox_given_back_is_taken_by_the_next_run(tmp_path: Path) -> None:
    async with pools_of(tmp_path) as pools:
        offer(pools, template(tmp_path), "fp")
        await until(lambda: len(idle(pools)) == 1, "a ready sandbox")
        sandbox = pools.take(KEY, "fp")
        assert sandbox is not None
        pools.give_back(KEY, sandbox)  # its run was canceled before it started
        assert pools.take(KEY, "fp") is sandbox
        await run_on(sandbox, "run_after", {})


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


async def _append_until(store: EventStore, payload: Payload, done: Callable[[], bool], what: str) -> None:
    """Append ``payload`` to project ``tests`` until ``done()`` (again, in case the event came
    before the follower's subscription did)."""
    deadline = time.monotonic() + 90
    while True:
        await store.append(make_event(payload, project="tests", aggregate_id="tests", event_id=new_id("evt")))
        try:
            return await until(done, what, timeout=3)
        except AssertionError:
            if time.monotonic() > deadline:
                raise


async def test_changes_in_the_stream_retire_and_move_pools_before_the_next_run(
    tmp_path: Path, store: EventStore
) -> None:
    # The runner follows the stream: a variable set or unset retires the project's pools at once
    # (the next run would not take their sandboxes anyway), and a rollback moves the pools of the
    # environment it changes to the version it points at now.
    stop = asyncio.Event()
    async with pools_of(tmp_path) as pools:
        follower = asyncio.create_task(follow_changes(store, pools, stop))
        try:
            offer(pools, template(tmp_path), "fp")
            await until(lambda: len(idle(pools)) == 1, "a ready sandbox")
            old = idle(pools)[0]
            await _append_until(
                store, EnvUnset(key="COLOR"), lambda: pools.pools[KEY].stale, "a retired pool"
            )
            assert idle(pools) == []
            await until(lambda: not sandbox_pids(old), "its sandbox to end")

            offer(pools, template(tmp_path), "fp-2")  # the next (cold) run's own spec
            rollback = DeploymentPromoted(
                deployment_id="dep_older", environment="production", name="default", rollback=True
            )
            moved = PoolKey("dep_older", KEY.environment)
            await _append_until(store, rollback, lambda: pools.pools[KEY].moving_to == moved, "a moved pool")
            assert pools.take(KEY, "fp-2") is None
        finally:
            stop.set()
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower


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
