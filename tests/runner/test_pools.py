"""Pools of warm sandboxes on the process backend: ready ahead of runs, one run each, always as
fresh as the run that takes one, and gone when idle or stopped (the memory budget and fork
servers: test_pool_budget.py).

A test that takes ``forking`` runs twice: with sandboxes forked from the pool's fork server (what
the process backend does) and started one by one (what backends that cannot fork do)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pool_helpers import KEY, idle, offer, pools_of, run_on, sandbox_pids, template, until

from crewyard.core.events import DeploymentPromoted, EnvUnset, Payload, make_event
from crewyard.core.ids import new_id
from crewyard.eventstore import EventStore
from crewyard.runner import pools as pools_module
from crewyard.runner.backends._forkserver import ForkedHandle
from crewyard.runner.changes import follow_changes
from crewyard.runner.pools import Pool, PoolKey, Renewal
from crewyard.runner.warm import WarmSandbox

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(params=["forked", "one-by-one"])
def forking(request: pytest.FixtureRequest) -> bool:
    return bool(request.param == "forked")


async def test_a_pool_keeps_sandboxes_ready_and_each_serves_exactly_one_run(
    tmp_path: Path, forking: bool
) -> None:
    async with pools_of(tmp_path, forking) as pools:
        offer(pools, template(tmp_path), "fp-1", low=2)
        await until(lambda: len(idle(pools)) == 2, "two ready sandboxes")
        first, second = pools.take(KEY, "fp-1"), pools.take(KEY, "fp-1")
        assert first is not None and second is not None and first is not second
        assert isinstance(first.handle, ForkedHandle) == forking
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
    tmp_path: Path, forking: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pause is long when a sandbox is started one by one (an interpreter importing the
    crew), short when it is forked from the pool's server; both keep it off the run's start."""
    monkeypatch.setattr(pools_module, "REFILL_AFTER_TAKE_S", 600.0)
    monkeypatch.setattr(pools_module, "REFILL_FORKED_AFTER_TAKE_S", 300.0)
    async with pools_of(tmp_path, forking) as pools:
        offer(pools, template(tmp_path), "fp-1")
        await until(lambda: len(idle(pools)) == 1, "a ready sandbox")
        taken = pools.take(KEY, "fp-1")
        assert taken is not None
        pool = pools.pools[KEY]
        pause = pool.refill_at - time.monotonic()
        assert (250 < pause <= 300) if forking else (550 < pause <= 600)
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


async def test_a_run_with_another_fingerprint_never_gets_an_older_sandbox(
    tmp_path: Path, forking: bool
) -> None:
    async with pools_of(tmp_path, forking) as pools:
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


async def test_a_retired_pool_renews_its_template_and_refills(tmp_path: Path, forking: bool) -> None:
    renewed: list[PoolKey] = []

    async def renew(pool: Pool) -> Renewal:
        renewed.append(pool.key)
        return Renewal(pool.key, template(tmp_path, {"COLOR": "green"}), "green")

    async with pools_of(tmp_path, forking, renew=renew) as pools:
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


async def test_an_idle_deployment_goes_back_to_zero(tmp_path: Path, forking: bool) -> None:
    async with pools_of(tmp_path, forking, idle_s=1.0) as pools:
        offer(pools, template(tmp_path), "fp", low=2)
        await until(lambda: len(idle(pools)) == 2, "two ready sandboxes")
        sandboxes = idle(pools)
        await until(lambda: KEY not in pools.pools, "the pool to be emptied")
        await until(lambda: not any(sandbox_pids(s) for s in sandboxes), "its sandboxes to end")


async def test_a_crew_that_cannot_be_imported_leaves_its_runs_cold(tmp_path: Path, forking: bool) -> None:
    async with pools_of(tmp_path, forking) as pools:
        offer(pools, template(tmp_path, {"FAIL_AT_IMPORT": "on purpose"}), "fp")
        pool = pools.pools[KEY]
        await until(lambda: pool.failures >= 1, "the warm-up to fail")
        assert pools.take(KEY, "fp") is None and pool.idle == [] and pool.retry_at > time.monotonic()


async def test_stopping_removes_every_sandbox_idle_or_warming(tmp_path: Path, forking: bool) -> None:
    async with pools_of(tmp_path, forking) as pools:
        offer(pools, template(tmp_path), "fp", low=3, high=3)
        await until(lambda: len(idle(pools)) >= 1, "a ready sandbox")
        everything = [
            s for p in pools.pools.values() for s in (*p.idle, *p.warming) if isinstance(s, WarmSandbox)
        ]
    assert everything
    await until(lambda: not any(sandbox_pids(s) for s in everything), "the sandboxes to end")
    assert not any(s.spec.work_dir.exists() for s in everything)


async def test_a_sandbox_given_back_is_taken_by_the_next_run(tmp_path: Path, forking: bool) -> None:
    async with pools_of(tmp_path, forking) as pools:
        offer(pools, template(tmp_path), "fp")
        await until(lambda: len(idle(pools)) == 1, "a ready sandbox")
        sandbox = pools.take(KEY, "fp")
        assert sandbox is not None
        pools.give_back(KEY, sandbox)  # its run was canceled before it started
        assert pools.take(KEY, "fp") is sandbox
        await run_on(sandbox, "run_after", {})


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
    tmp_path: Path, forking: bool, store: EventStore
) -> None:
    # The runner follows the stream: a variable set or unset retires the project's pools at once
    # (the next run would not take their sandboxes anyway), and a rollback moves the pools of the
    # environment it changes to the version it points at now.
    stop = asyncio.Event()
    async with pools_of(tmp_path, forking) as pools:
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


async def test_a_sandbox_whose_pool_went_while_it_was_measured_is_removed(
    tmp_path: Path, forking: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    measured: list[WarmSandbox] = []
    measure = WarmSandbox.measure

    async def drop_then_measure(self: WarmSandbox) -> int | None:
        if not measured:  # the first sandbox warmed up: its pool is dropped meanwhile (idle, gone)
            measured.append(self)
            pools._drop(pools.pools[KEY])
        return await measure(self)

    monkeypatch.setattr(WarmSandbox, "measure", drop_then_measure)
    async with pools_of(tmp_path, forking) as pools:
        offer(pools, template(tmp_path), "fp")
        await until(lambda: bool(measured), "a sandbox measured")
        await until(lambda: not sandbox_pids(measured[0]), "the sandbox of the dropped pool to end")
