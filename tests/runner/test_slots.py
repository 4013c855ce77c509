"""Concurrency slots against a real JetStream key-value bucket: limits hold, the oldest waiting
run goes first, a run waiting on one scope holds no slot of another, and a holder whose run
ended frees its slot without being released."""

from __future__ import annotations

import uuid

from crewyard.eventstore import EventStore
from crewyard.runner.slots import Slots


async def _never_over(run_id: str) -> bool:
    return False


def _slots(store: EventStore) -> Slots:
    return Slots(store, bucket=f"SLOTS_{uuid.uuid4().hex[:8]}")


async def test_a_limit_holds_and_the_oldest_waiting_run_goes_first(store: EventStore) -> None:
    slots = _slots(store)
    limits = {"proj.acme": 1}
    assert await slots.acquire("run_1", limits, _never_over)
    assert not await slots.acquire("run_3", limits, _never_over)  # full: run_3 waits
    assert not await slots.acquire("run_2", limits, _never_over)  # full: run_2 waits, ahead of run_3
    await slots.release("run_1", ["proj.acme"])
    assert not await slots.acquire("run_3", limits, _never_over)  # room, but run_2 is older
    assert await slots.acquire("run_2", limits, _never_over)
    assert await slots.acquire("run_2", limits, _never_over)  # asking again while holding: still ours


async def test_a_run_waiting_on_one_scope_holds_no_slot_of_another(store: EventStore) -> None:
    slots = _slots(store)
    assert await slots.acquire("run_1", {"dep.d": 1}, _never_over)
    assert not await slots.acquire("run_2", {"dep.d": 1, "proj.acme": 1}, _never_over)
    # run_2 did not keep proj.acme while waiting for dep.d: another run of the project may start.
    assert await slots.acquire("run_0", {"proj.acme": 1}, _never_over)


async def test_a_holder_whose_run_ended_frees_its_slot_without_a_release(store: EventStore) -> None:
    slots = _slots(store)
    ended: set[str] = set()

    async def is_over(run_id: str) -> bool:
        return run_id in ended

    assert await slots.acquire("run_1", {"proj.acme": 1}, is_over)
    assert not await slots.acquire("run_2", {"proj.acme": 1}, is_over)
    ended.add("run_1")  # its runner died without releasing: the terminal event is what counts
    assert await slots.acquire("run_2", {"proj.acme": 1}, is_over)


async def test_two_executions_of_one_run_share_its_slot_and_each_gives_back_only_its_own(
    store: EventStore,
) -> None:
    """The run's message came again while an execution of it was getting ready: the one that loses
    run.started gives back its reference, and the winner still holds the run's slot."""
    slots = _slots(store)
    limits = {"dep.d": 1}
    assert await slots.acquire("run_1", limits, _never_over)  # the first execution
    assert await slots.acquire("run_1", limits, _never_over)  # the copy: the same run, one slot
    await slots.release("run_1", ["dep.d"])  # the copy lost run.started
    assert not await slots.acquire("run_2", limits, _never_over)  # the winner still holds it
    await slots.release("run_1", ["dep.d"])  # the winner's outcome is written
    assert await slots.acquire("run_2", limits, _never_over)


async def test_a_copy_that_backs_out_does_not_put_its_holding_run_in_line(store: EventStore) -> None:
    """The copy of a run shared its deployment's slot, then found its project's full and gave the
    slot back to wait in line: the run still holds the slot (the other execution's), so it must
    not also wait in line — a run in line ahead of every later one, never leaving it while it
    runs, would hold them all back though a slot is free."""
    slots = _slots(store)
    assert await slots.acquire("run_1", {"dep.d": 2}, _never_over)  # the first execution
    assert await slots.acquire("run_1", {"dep.d": 2}, _never_over)  # the copy shares it
    await slots.release("run_1", ["dep.d"], keep_queued=True)  # the copy backs out to wait
    assert await slots.acquire("run_2", {"dep.d": 2}, _never_over)  # the second slot is free


async def test_a_look_reads_the_runs_ahead_only_up_to_the_first_still_waiting(store: EventStore) -> None:
    """Hundreds of runs wait for one slot and each looks again every few seconds: a look must
    not read every run in line (that was n reads each, n squared in all), only the ended runs
    ahead of it and the first that is not; ended runs ahead are still dropped from the line."""
    slots = _slots(store)
    limits = {"dep.d": 1}
    ended: set[str] = set()
    asked: list[str] = []

    async def is_over(run_id: str) -> bool:
        asked.append(run_id)
        return run_id in ended

    assert await slots.acquire("run_000", limits, is_over)
    for i in range(1, 200):
        assert not await slots.acquire(f"run_{i:03}", limits, is_over)
    asked.clear()
    assert not await slots.acquire("run_199", limits, is_over)
    assert asked == ["run_000", "run_001"], asked  # the holder, then the first in line

    ended.update({"run_000", "run_001", "run_002"})  # the holder and the first two in line end
    asked.clear()
    assert not await slots.acquire("run_150", limits, is_over)  # frees the slot; run_003 is first
    assert asked == ["run_000", "run_001", "run_002", "run_003"], asked
    assert await slots.acquire("run_003", limits, is_over)


async def test_a_waiting_run_learns_its_place_and_a_look_that_changes_nothing_writes_nothing(
    store: EventStore,
) -> None:
    """Thousands of runs waiting in one scope each look again and again: a look wrote the key
    every time (the whole line), and every waiting run looked every second whatever its place."""
    slots = _slots(store)
    limits = {"dep.d": 2}
    assert await slots.acquire("run_01", limits, _never_over)
    assert await slots.acquire("run_02", limits, _never_over)
    places = [await slots.acquire(f"run_{i:02d}", limits, _never_over) for i in range(3, 10)]
    assert not any(places)
    assert [turn.rounds for turn in places] == [0, 0, 1, 1, 2, 2, 3]  # two slots: two per round
    kv = await store.js.key_value(slots.bucket)
    revision = (await kv.get("dep.d")).revision
    again = await slots.acquire("run_07", limits, _never_over)
    assert not again and again.rounds == 2
    assert (await kv.get("dep.d")).revision == revision
