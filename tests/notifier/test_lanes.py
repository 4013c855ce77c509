"""How much of a notifier instance one webhook's lane may take."""

from __future__ import annotations

import asyncio

from crewyard.core.webhooks import RetryPolicy
from crewyard.eventstore import EventStore
from crewyard.notifier.deliver import LANE_BACKLOG, MAX_HELD, PROJECT_HELD, Deliverer, Lane


def _fill(d: Deliverer, lane: Lane) -> None:
    """What a receiver that never answers ends with: everything routed to it, held."""
    while d.room_for(lane):
        item = object()
        lane.take(item)  # type: ignore[arg-type]
        d.held[id(item)] = item  # type: ignore[assignment]


async def test_receivers_that_never_answer_leave_room_for_every_other_webhook(store: EventStore) -> None:
    d = Deliverer(store, None, None, None, policy=RetryPolicy(), concurrency=4, ack_wait=30)  # type: ignore[arg-type]
    first = d.lanes["whk_first"] = Lane(d, "whk_first", "p0")
    _fill(d, first)
    assert first.held == LANE_BACKLOG  # alone, a lane has its whole backlog
    # 34 tarpits with a backlog each filled one instance's 2,000 before: no other delivery was
    # fetched again.
    for n in range(1, 200):
        _fill(d, d.lanes.setdefault(f"whk_{n}", Lane(d, f"whk_{n}", f"p{n}")))
        assert len(d.held) <= MAX_HELD // 2 + n, n
    victim = d.lanes["whk_victim"] = Lane(d, "whk_victim", "victim")
    assert d.room_for(victim)  # the next webhook's delivery is taken
    assert MAX_HELD - len(d.held) > 0  # and the instance goes on fetching


async def test_one_project_never_holds_more_than_its_part_however_many_webhooks_it_has(
    store: EventStore,
) -> None:
    d = Deliverer(store, None, None, None, policy=RetryPolicy(), concurrency=4, ack_wait=30)  # type: ignore[arg-type]
    # 2,100 webhooks of one project, each at a receiver that never answers: a lane that held
    # nothing always took one, and the instance's 2,000 were theirs.
    for n in range(2_100):
        _fill(d, d.lanes.setdefault(f"whk_{n}", Lane(d, f"whk_{n}", "mallory")))
    assert len(d.held) == PROJECT_HELD
    victim = d.lanes["whk_victim"] = Lane(d, "whk_victim", "alice")
    _fill(d, victim)
    assert victim.held >= 1 and MAX_HELD - len(d.held) > 0


async def test_what_lanes_hold_is_counted_as_they_take_and_end_messages(store: EventStore) -> None:
    d = Deliverer(store, None, None, None, policy=RetryPolicy(), concurrency=4, ack_wait=30)  # type: ignore[arg-type]
    release = asyncio.Event()
    sent: list[object] = []

    async def process(item: object, lane: Lane) -> None:
        await release.wait()
        sent.append(item)

    d.process = process  # type: ignore[assignment,method-assign]
    lanes = [d.lanes.setdefault(f"whk_{n}", Lane(d, f"whk_{n}", f"p{n % 2}")) for n in range(3)]
    items = [object() for _ in range(7)]
    for n, item in enumerate(items):
        d.held[id(item)] = item  # type: ignore[assignment]
        lanes[n % 3].push(item)  # type: ignore[arg-type]
    await asyncio.sleep(0)
    assert d.busy == 3 and d.project_held == {"p0": 5, "p1": 2}  # whk_0 and whk_2 are p0's
    assert [lane.held for lane in lanes] == [3, 2, 2]
    release.set()
    await asyncio.gather(*list(d.tasks))
    assert len(sent) == len(items)
    assert d.busy == 0 and d.project_held == {} and not d.held
    assert [lane.held for lane in lanes] == [0, 0, 0]
