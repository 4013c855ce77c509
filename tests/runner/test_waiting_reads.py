"""What a pending run reads of the stream's leader (``load(current=True)``) on its way to a slot:
its project's limits when it is first seen (not older than its POST), nothing while it waits for
a slot (its message comes back every second: a leader's read per waiting run and second), and
its deployment only to confirm a replica's "not ready" before the run is failed for it."""

from __future__ import annotations

from typing import Any

import pytest

from crewyard.core import run_state as rs
from crewyard.core.deployment_state import READY
from crewyard.runner import executor
from crewyard.runner.executor import Executor
from crewyard.runner.slots import Turn

CONFIG = {"entrypoint": "crew:run", "max_concurrent_runs": 1}


class _Store:
    """Records each load and whether the leader was asked."""

    def __init__(self) -> None:
        self.loads: list[tuple[str, bool]] = []

    async def load(
        self, project: str, aggregate: str, aggregate_id: str, *, current: bool = False
    ) -> list[Any]:
        self.loads.append((aggregate, current))
        return []


class _Full:
    def __init__(self, rounds: int = 0) -> None:
        self.rounds = rounds

    async def acquire(self, *_: Any) -> Turn:
        return Turn(False, rounds=self.rounds)  # every slot taken: the run waits


class _Item:
    def __init__(self, deliveries: int) -> None:
        self.deliveries, self.naked, self.acked = deliveries, False, False
        self.delay: float | None = None

    async def in_progress(self) -> None:
        return None

    async def nak(self, delay: float | None = None) -> None:
        self.naked, self.delay = True, delay

    async def ack(self) -> None:
        self.acked = True


def _executor(store: _Store, rounds: int = 0) -> Executor:
    ex = object.__new__(Executor)
    ex.store, ex.slots = store, _Full(rounds)  # type: ignore[assignment]
    return ex


@pytest.mark.parametrize(("deliveries", "leader_reads"), [(1, [("project", True)]), (2, [])])
async def test_a_run_waiting_for_a_slot_reads_the_leader_only_when_first_seen(
    monkeypatch: pytest.MonkeyPatch, deliveries: int, leader_reads: list[tuple[str, bool]]
) -> None:
    ready = type("Dep", (), {"status": READY, "config": CONFIG})()
    monkeypatch.setattr(executor, "fold_deployment", lambda *_: ready)
    store, item = _Store(), _Item(deliveries)
    state = rs.RunState(run_id="run_waiting", project="p", status=rs.PENDING, deployment_id="dep_1")
    await _executor(store).execute(item, state)  # type: ignore[arg-type]
    assert item.naked and not item.acked  # still waiting for its slot
    assert [load for load in store.loads if load[1]] == leader_reads
    assert ("deployment", False) in store.loads


async def test_a_replicas_not_ready_is_asked_of_the_leader_before_the_run_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[int] = []

    def fold(_: str, history: list[Any]) -> Any:
        seen.append(len(seen))
        status = READY if len(seen) == 2 else "building"  # the leader has it ready
        return type("Dep", (), {"status": status, "config": CONFIG})()

    monkeypatch.setattr(executor, "fold_deployment", fold)
    store, item = _Store(), _Item(1)
    state = rs.RunState(run_id="run_waiting", project="p", status=rs.PENDING, deployment_id="dep_1")
    await _executor(store).execute(item, state)  # type: ignore[arg-type]
    assert store.loads[:2] == [("deployment", False), ("deployment", True)]
    assert item.naked and not item.acked  # not failed: it waits for its slot


@pytest.mark.parametrize(("rounds", "delay"), [(0, 1.0), (4, 5.0), (10_000, 60.0)])
async def test_a_run_further_back_in_line_comes_back_later(
    monkeypatch: pytest.MonkeyPatch, rounds: int, delay: float
) -> None:
    """Thousands of waiting runs each looked every second (three reads and a slot look each):
    the runners' time went to one project's line. The next in line still looks every second."""
    ready = type("Dep", (), {"status": READY, "config": CONFIG})()
    monkeypatch.setattr(executor, "fold_deployment", lambda *_: ready)
    item = _Item(2)
    state = rs.RunState(run_id="run_waiting", project="p", status=rs.PENDING, deployment_id="dep_1")
    await _executor(_Store(), rounds).execute(item, state)  # type: ignore[arg-type]
    assert item.naked and item.delay == delay
