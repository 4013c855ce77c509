"""Run ownership under broker outages: the lease decision, then the leases on a real nats-server.

The property that makes a run execute at most once at a time: an owner that goes silent stops
its attempts (``fence_after_s``) before any other runner may conclude it is gone, and an outage
of the broker never counts as silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from crewyard.eventstore import EventStore, StoreUnavailable, StreamSettings, close, connect
from crewyard.natsserver import EmbeddedNats
from crewyard.runner.liveness import RENEWALS, LeaseEntry, Liveness, still_held
from crewyard.testing.platform import free_port

NEEDED = RENEWALS + 1
ENTRY = LeaseEntry(revision=40, runs={"run_a": 2})


def test_an_owner_that_renewed_lately_keeps_its_attempt() -> None:
    assert still_held(ENTRY, "run_a", 2, own_renewals=[], needed=NEEDED)
    assert still_held(ENTRY, "run_a", 2, own_renewals=list(range(41, 41 + NEEDED - 1)), needed=NEEDED)


def test_an_owner_silent_for_a_whole_lease_of_the_judges_renewals_loses_it() -> None:
    assert not still_held(ENTRY, "run_a", 2, own_renewals=list(range(41, 41 + NEEDED)), needed=NEEDED)


def test_renewals_from_before_the_owners_latest_entry_do_not_count() -> None:
    """After an outage the owner renews once and is as good as new, however long it was away."""
    before = list(range(1, 40))
    assert still_held(ENTRY, "run_a", 2, own_renewals=[*before, 41, 42], needed=NEEDED)


@pytest.mark.parametrize(
    "entry",
    [None, LeaseEntry(revision=40, runs={}), LeaseEntry(revision=40, runs={"run_a": 1})],
    ids=["no entry (stopped cleanly)", "let it go", "an older attempt"],
)
def test_an_entry_without_the_attempt_means_the_owner_let_it_go(entry: LeaseEntry | None) -> None:
    assert not still_held(entry, "run_a", 2, own_renewals=[], needed=NEEDED)


async def _until(condition: Callable[[], Awaitable[bool]], timeout_s: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


def _pair(store: EventStore, lease_s: float) -> tuple[Liveness, Liveness]:
    bucket = f"T_LEASES_{uuid.uuid4().hex[:8]}"
    return Liveness(store, "owner", lease_s, bucket), Liveness(store, "judge", lease_s, bucket)


@pytest.mark.slow  # waits a lease and more
async def test_a_live_owner_keeps_its_run_and_a_silent_one_is_fenced_before_it_loses_it(
    store: EventStore,
) -> None:
    owner, judge = _pair(store, lease_s=3.0)
    beats = [asyncio.create_task(owner.beat()), asyncio.create_task(judge.beat())]
    try:
        await owner.claim("run_a", 1)
        await _until(lambda: _renewed(judge, NEEDED + 2), 30)  # a lease and more of the judge's time
        assert await judge.holds("owner", "run_a", 1)
        assert not await judge.holds("owner", "run_a", 2)  # only the attempt it claimed

        beats[0].cancel()  # the owner goes silent (as a partitioned or frozen runner does)
        await _until(lambda: _lost(judge), 30)
        # By then the owner had gone a whole fence period without renewing: it has already
        # stopped its attempts (attempts.fence_when_silent) when the judge takes over.
        assert owner.silent_for() >= owner.fence_after_s
    finally:
        for task in beats:
            task.cancel()


async def test_a_released_run_is_free_at_once(store: EventStore) -> None:
    owner, judge = _pair(store, lease_s=60.0)
    await owner.claim("run_a", 1)
    assert await judge.holds("owner", "run_a", 1)
    await owner.release("run_a")
    assert not await judge.holds("owner", "run_a", 1)
    await owner.claim("run_b", 1)
    await owner.close()  # a clean stop
    assert not await judge.holds("owner", "run_b", 1)


async def _renewed(liveness: Liveness, count: int) -> bool:
    return liveness.renewed >= count


async def _lost(judge: Liveness) -> bool:
    return not await judge.holds("owner", "run_a", 1)


@pytest.fixture
async def own_broker(tmp_path: Path) -> AsyncIterator[tuple[EmbeddedNats, EventStore]]:
    """A nats-server of this test's own, to be stopped and started again."""
    server = EmbeddedNats(tmp_path / "nats", port=free_port())
    url = server.start()
    nc = await connect(url, name="leases", creds=server.creds("admin"))  # buckets of its own
    es = EventStore(nc, StreamSettings())
    yield server, es
    await close(nc)  # the test may have stopped the server: nothing of the client retries on
    server.stop()


@pytest.mark.slow  # waits a lease and more
async def test_a_broker_outage_longer_than_the_lease_does_not_cost_the_owner_its_run(
    own_broker: tuple[EmbeddedNats, EventStore],
) -> None:
    server, store = own_broker
    owner, judge = _pair(store, lease_s=3.0)
    beats = [asyncio.create_task(owner.beat()), asyncio.create_task(judge.beat())]
    try:
        await owner.claim("run_a", 1)
        await _until(lambda: _renewed(judge, 3), 30)
        server.stop()
        await _until(_silent(owner, owner.lease_s * 1.5), 60)  # nobody renews meanwhile
        server.start()
        # Both renew again; however long the outage was, the judge needs a lease of renewals
        # landed after the owner's latest entry, and the owner writes one within an interval.
        since = judge.renewed
        while judge.renewed < since + NEEDED + 2:
            with contextlib.suppress(StoreUnavailable):  # the broker is still starting
                assert await judge.holds("owner", "run_a", 1)
            await asyncio.sleep(judge.interval_s / 2)
    finally:
        for task in beats:
            task.cancel()


def _silent(liveness: Liveness, seconds: float) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return liveness.silent_for() >= seconds

    return check


async def test_letting_go_of_an_attempt_leaves_a_later_claim_of_the_run(store: EventStore) -> None:
    liveness = Liveness(store, f"r-{uuid.uuid4().hex[:6]}", 6.0, bucket=f"L_{uuid.uuid4().hex[:8]}")
    await liveness.claim("run_1", 2)
    await liveness.release("run_1", 1)  # an earlier attempt's execution, ending late
    assert liveness.runs == {"run_1": 2}
    await liveness.release("run_1", 2)
    assert liveness.runs == {}
