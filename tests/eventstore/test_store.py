import asyncio
import time
import uuid

import pytest

from crewyard.core import run_state as rs
from crewyard.core.events import Log, RunQueued, RunStarted, make_event
from crewyard.core.ids import new_id
from crewyard.eventstore import ConcurrencyConflict, EventStore, StoreUnavailable, _follow
from crewyard.eventstore._store import BATCH_BYTES


def _ev(payload, run_id, event_id=None):
    return make_event(payload, project="acme", aggregate_id=run_id, event_id=event_id or new_id("evt"))


QUEUED = RunQueued(deployment_id="dep_1", input={})
STARTED = RunStarted(runner_id="r", backend="process", isolated=False)


async def test_append_load_and_expected_sequence(store: EventStore):
    run = new_id("run")
    s1 = await store.append(_ev(QUEUED, run), expected_seq=0)
    with pytest.raises(ConcurrencyConflict):
        await store.append(_ev(QUEUED, run), expected_seq=0)
    s2 = await store.append(_ev(STARTED, run), expected_seq=s1)
    history = await store.load("acme", "run", run)
    assert [r.seq for r in history] == [s1, s2]
    assert [r.event.type for r in history] == ["run.queued", "run.started"]
    assert await store.load_any("run", run) == history


async def test_a_runs_lifecycle_loads_without_what_its_crew_emitted(store: EventStore):
    run = new_id("run")
    queued = await store.append(_ev(QUEUED, run), expected_seq=0)
    for i in range(50):
        await store.append(_ev(Log(message=f"line {i}"), run))
    started = await store.append(_ev(STARTED, run))
    await store.append(_ev(Log(message="after"), run))
    for lifecycle in (
        await store.load("acme", "run", run, types=rs.LIFECYCLE),
        await store.load_any("run", run, types=rs.LIFECYCLE),
    ):
        assert [(r.seq, r.event.type) for r in lifecycle] == [
            (queued, "run.queued"),
            (started, "run.started"),
        ]
        state = rs.fold(run, lifecycle)
        assert (state.status, state.version) == (rs.RUNNING, started)
    assert len(await store.load("acme", "run", run)) == 53


async def test_two_writers_with_the_same_expectation_only_one_wins(store: EventStore):
    run = new_id("run")
    seq = await store.append(_ev(QUEUED, run), expected_seq=0)
    results = await asyncio.gather(
        *(store.append(_ev(STARTED, run), expected_seq=seq) for _ in range(5)), return_exceptions=True
    )
    assert sum(isinstance(r, int) for r in results) == 1
    assert sum(isinstance(r, ConcurrencyConflict) for r in results) == 4


async def test_same_event_id_is_stored_once(store: EventStore):
    run = new_id("run")
    event = _ev(Log(message="x"), run)
    a = await store.append(event)
    b = await store.append(event)
    assert a == b
    assert len(await store.load("acme", "run", run)) == 1


@pytest.mark.parametrize(
    ("answers", "maybe_stored"),
    [
        (["none"], False),  # no stream had it: it cannot land later
        (["timeout"], True),  # sent, never answered: it may land later
        (["timeout", "none"], True),  # the first attempt may land although the second found none
    ],
    ids=["no responders", "no answer", "no answer, then no responders"],
)
async def test_a_failed_append_says_whether_the_event_may_be_stored_all_the_same(
    store: EventStore, monkeypatch: pytest.MonkeyPatch, answers: list[str], maybe_stored: bool
):
    from nats.errors import TimeoutError as NatsTimeout

    left = list(answers)
    real = store.js.publish

    async def publish(subject, *args, **kwargs):
        if left.pop(0) == "timeout":
            raise NatsTimeout()
        return await real(f"nostream.{uuid.uuid4().hex}", *args, **kwargs)  # no stream has it

    monkeypatch.setattr(store.js, "publish", publish)
    with pytest.raises(StoreUnavailable) as failed:
        await store.append(_ev(QUEUED, new_id("run")), expected_seq=0, attempts=len(answers))
    assert failed.value.maybe_stored is maybe_stored and not left


async def test_follow_replays_then_goes_live_from_a_sequence(store: EventStore):
    run = new_id("run")
    seqs = [await store.append(_ev(Log(message=str(i)), run)) for i in range(5)]
    filt = store.aggregate_filter("acme", "run", run)
    async with store.follow(filt, start_seq=seqs[2]) as queue:
        got = [(await asyncio.wait_for(queue.get(), 5)).seq for _ in range(3)]
        assert got == seqs[2:]
        live = await store.append(_ev(Log(message="live"), run))
        assert (await asyncio.wait_for(queue.get(), 5)).seq == live


async def test_pipelined_appends_all_land_in_order(store: EventStore):
    run = new_id("run")
    for i in range(300):
        await store.append_nowait(_ev(Log(message=str(i)), run))
    await store.flush()
    history = await store.load("acme", "run", run)
    assert [r.event.data.message for r in history] == [str(i) for i in range(300)]


def _stall_after(store: EventStore, api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every request to ``api`` is followed by half a second in which the process reads nothing
    (a busy machine)."""
    loop, publish = asyncio.get_running_loop(), store.nc.publish

    async def publish_then_stall(subject: str, payload: bytes = b"", reply: str = "", headers=None) -> None:
        await publish(subject, payload, reply, headers)
        if subject.startswith(api):
            await store.nc.flush()
            loop.call_soon(time.sleep, 0.5)

    monkeypatch.setattr(store.nc, "publish", publish_then_stall)


async def _twelve_of_7_mb(store: EventStore) -> str:
    run = new_id("run")
    big = "x" * 7_000_000
    for i in range(12):
        await store.append_nowait(_ev(Log(message=f"{i:02}{big}"), run))
    await store.flush(timeout=60)
    return run


async def test_a_large_aggregate_loads_in_batches_a_slow_reader_can_take(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
):
    """84 MB of events (twelve of 7 MB, under the broker's 8 MB max_payload) load in batches of
    about ``BATCH_BYTES``, all of them: a short batch is not taken for the end of the aggregate.
    A reader that reads nothing for a moment after each request (a busy machine) is not cut off:
    batches of the server's own cap (about 64 MB) passed its max_pending, and the server dropped
    the reader's connection as a slow consumer."""
    run = await _twelve_of_7_mb(store)
    with monkeypatch.context() as stalling:
        _stall_after(store, "$JS.API.DIRECT.GET.", stalling)
        history = await store.load("acme", "run", run)
    assert [r.event.data.message[:2] for r in history] == [f"{i:02}" for i in range(12)]
    filt = store.aggregate_filter("acme", "run", run)
    batches = [chunk async for chunk in store.raw_batches(filt)]
    assert [r.seq for chunk in batches for r in chunk] == [r.seq for r in history]
    assert all(sum(len(r.data) for r in chunk[:-1]) < BATCH_BYTES for chunk in batches)
    assert [r.seq for r in history] == [r.seq for r in await store.load_raw(filt, batch=3)]
    assert store.nc.stats["reconnects"] == 0


async def test_a_slow_follower_of_large_events_is_not_cut_off(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
):
    """The same for ``read_batches`` (the projector's, a console's history): a pull of 1,000
    events sent them all at once, past the server's max_pending for a reader that reads nothing
    for a moment, and the server dropped its connection (again at every pull)."""
    run = await _twelve_of_7_mb(store)
    _stall_after(store, "$JS.API.CONSUMER.MSG.NEXT.", monkeypatch)
    make, made = store._pull_consumer, []

    async def counted(filter_subject: str, start_seq: int):
        made.append(start_seq)
        return await make(filter_subject, start_seq)

    monkeypatch.setattr(store, "_pull_consumer", counted)
    filt = store.aggregate_filter("acme", "run", run)
    first = (await store.load_raw(filt, batch=1))[0].seq
    read: list[list[int]] = []
    batches = store.read_batches(filt, start_seq=first, batch=1000, idle_s=2.0)
    async for batch in batches:
        read.append([raw.seq for raw in batch])
        if sum(map(len, read)) >= 12 or len(read) > 12:
            break
    await batches.aclose()
    assert [seq for batch in read for seq in batch] == list(range(first, first + 12))
    assert max(map(len, read)) <= (_follow.PULL_BYTES + store.nc.max_payload) // 7_000_000 + 1
    assert store.nc.stats["reconnects"] == 0 and made == [first]  # one consumer: no gap, no failed pull


async def test_a_pull_given_up_early_loses_nothing_and_a_large_event_is_still_read(store: EventStore):
    """Messages of a pull that come after the reader stopped waiting for them (a busy process)
    are the consumer's next ones: the next fetch returns them (they were thrown away, and the
    reader waited for news that had come). The end status such a pull still gets ("409 Batch
    Completed") does not end a later pull. An event larger than a pull's byte bound is read
    by the pull that waits for news (else no pull would ever send it)."""
    run = new_id("run")
    stored = [await store.append(_ev(Log(message=f"{i}" + "x" * 1000 * i), run)) for i in range(4)]
    pull = await store._pull_consumer(store.aggregate_filter("acme", "run", run), stored[0])
    assert pull is not None
    first = await pull._pull({"batch": 3, "no_wait": True, "max_bytes": pull.max_bytes}, 1, 2.0)
    await store.nc.flush()
    late = await pull.fetch(10, 2.0)
    pull.max_bytes = 2500  # the last event (3 KB) passes it
    rest = await pull.fetch(10, 2.0)
    seqs = [m.metadata.sequence.stream for m in first + late + rest]
    assert seqs == stored, (len(first), len(late), len(rest))
    with pytest.raises(TimeoutError):
        await pull.fetch(10, 0.2)
    await pull.unsubscribe()


async def test_the_ack_says_whether_the_server_had_the_event_already(store: EventStore):
    """Two commands with the same event id on different aggregates (an idempotency key used by
    two concurrent requests): the second is dropped, and its ack points at the first."""
    first, second = new_id("run"), new_id("run")
    event_id = new_id("evt")
    won = await store.append_acked(_ev(QUEUED, first, event_id), expected_seq=0)
    lost = await store.append_acked(_ev(QUEUED, second, event_id), expected_seq=0)
    assert not won.duplicate and lost.duplicate and lost.seq == won.seq
    assert (await store.get(lost.seq, leader=True)).decode().event.aggregate_id == first
    assert await store.load_any("run", second) == []


async def test_existence_is_asked_of_the_leader(store: EventStore):
    run = new_id("run")
    assert await store.last_seq_of(store.aggregate_filter("acme", "run", run)) is None
    s1 = await store.append(_ev(QUEUED, run), expected_seq=0)
    s2 = await store.append(_ev(STARTED, run), expected_seq=s1)
    filt = f"{store.prefix}.*.run.{run}.>"
    assert await store.last_seq_of(filt) == s2
    assert (await store.get(s1, leader=True)).seq == s1


async def test_a_current_load_is_not_answered_by_a_replica_behind_the_leader(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a cluster any replica answers a direct get, and one may lack the newest events. A
    replica one event behind (its first answers here) is read again; what one that stays behind
    lacks is read from the leader: never an answer with less than the stream had."""
    run = new_id("run")
    s1 = await store.append(_ev(QUEUED, run), expected_seq=0)
    s2 = await store.append(_ev(STARTED, run), expected_seq=s1)
    direct = store._direct_batch
    behind = {"answers": 2}

    async def lagging(*args, **kwargs):
        raws = await direct(*args, **kwargs)
        if behind["answers"] > 0:
            behind["answers"] -= 1
            return [r for r in raws if r.seq < s2]
        return raws

    monkeypatch.setattr(store, "_direct_batch", lagging)
    assert [r.seq for r in await store.load("acme", "run", run)] == [s1]  # what a plain load may see
    assert [r.seq for r in await store.load("acme", "run", run, current=True)] == [s1, s2]
    assert behind["answers"] == 0

    # A replica that stays behind: what it lacks is read from the leader, one event at a time.
    behind["answers"] = 1_000_000
    s3 = await store.append(_ev(Log(message="x"), run))
    s4 = await store.append(_ev(Log(message="y"), run))
    leader_reads = []
    get_msg = store._reads.get_msg

    async def counted(*args, **kwargs):
        if kwargs.get("next"):  # (the leader's last sequence of the filter is another get)
            leader_reads.append(kwargs.get("direct"))
        return await get_msg(*args, **kwargs)

    monkeypatch.setattr(store._reads, "get_msg", counted)
    assert [r.seq for r in await store.load("acme", "run", run, current=True)] == [s1, s2, s3, s4]
    assert leader_reads == [False, False, False]  # s2, s3 and s4


async def test_batches_read_again_what_was_sent_and_lost_on_the_way(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
):
    """The batches' consumer acknowledges nothing: a message the server sent and the client never
    got (a connection cut while a batch was on its way) is not sent again. The next batch began
    after it, and the projector stored a position past events it never applied."""
    from crewyard.core import subjects

    run = new_id("run")
    stored = [await store.append(_ev(QUEUED, run))]
    for i in range(11):
        stored.append(await store.append(_ev(Log(message=f"line {i}"), run)))
    make, lost = store._pull_consumer, []

    async def losing_one(filter_subject: str, start_seq: int):
        psub = await make(filter_subject, start_seq)
        fetch = psub.fetch

        async def fetch_and_lose(batch: int, timeout: float):
            msgs = await fetch(batch, timeout=timeout)
            if not lost and len(msgs) > 2:
                lost.append(msgs.pop(2).metadata.sequence.stream)
            return msgs

        psub.fetch = fetch_and_lose
        return psub

    monkeypatch.setattr(store, "_pull_consumer", losing_one)
    read: list[int] = []
    batches = store.read_batches(subjects.all_events(store.prefix), start_seq=stored[0], batch=5, idle_s=0.2)
    async for batch in batches:
        read += [raw.seq for raw in batch]
        if (read and read[-1] >= stored[-1]) or len(read) > 100:
            break
    await batches.aclose()
    assert lost and lost[0] in stored
    assert read == stored


@pytest.mark.timeout(120)  # a scan left waiting for its stall timer (600 s here) fails
@pytest.mark.parametrize("bound", ["events", "bytes"])
async def test_a_slow_replay_holds_a_bounded_part_of_the_stream_and_misses_nothing(
    store: EventStore, monkeypatch: pytest.MonkeyPatch, bound: str
):
    """A rebuild slower than the server: the scan's callback kept every event the server pushed
    meanwhile (a replay of 30,000 events of 20 KB held 700 MB). Past four batches it lets later
    events go and reads them again after the caller's batch, missing none."""
    from crewyard.core import subjects
    from crewyard.eventstore import _follow

    if bound == "bytes":  # reached before four batches: the scan must not wait for its stall timer
        monkeypatch.setattr(_follow, "KEPT_BYTES", 50_000)
    run = new_id("run")
    await store.append(_ev(QUEUED, run))
    pad = "x" * (2_000 if bound == "bytes" else 0)  # bytes: 25 events pass the bound, not 100
    count = 500 if bound == "bytes" else 2_000
    futures = [await store.append_nowait(_ev(Log(message=f"line {i}{pad}"), run)) for i in range(count)]
    await asyncio.gather(*futures)
    last = await store.last_seq()
    read: list[int] = []
    largest = 0
    rounds = store.scan(
        subjects.all_events(store.prefix),
        start_seq=1,
        until_seq=last,
        want=lambda _: True,
        batch=100,
        stall_s=600,
    )
    async for batch in rounds:
        largest = max(largest, len(batch))
        read += [raw.seq for raw in batch]
        await asyncio.sleep(0.05)  # a replay slower than the server
    assert read == list(range(1, last + 1))
    assert largest <= 400
