"""How much of a notifier instance one webhook's lane may take."""

from __future__ import annotations

from crewyard.core.webhooks import RetryPolicy
from crewyard.eventstore import EventStore
from crewyard.notifier.deliver import LANE_BACKLOG, MAX_HELD, PROJECT_HELD, Deliverer, Lane


def _fill(d: Deliverer, lane: Lane) -> None:
    """What a receiver that never answers ends with: everything routed to it, held."""
    while d.room_for(lane):
        item = object()
        lane.waiting.append(item)  # type: ignore[arg-type]
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
