"""The thread lifecycle in the core: one run at a time, settling, and the same state from the
whole history or from the latest event of each type."""

from __future__ import annotations

import json

import pytest

from crewyard.core import threads as t
from crewyard.core.events import (
    CheckpointRef,
    Payload,
    Recorded,
    ThreadCheckpointed,
    ThreadCreated,
    ThreadDeleted,
    ThreadRunAccepted,
    ThreadRunEnded,
    decode,
    encode,
    make_event,
)


def _history(*payloads: Payload) -> list[Recorded]:
    return [
        Recorded(i + 1, make_event(p, project="p", aggregate_id="thr_1", event_id=f"evt_{i}"))
        for i, p in enumerate(payloads)
    ]


def _latest_of_each_type(history: list[Recorded]) -> list[Recorded]:
    latest: dict[str, Recorded] = {}
    for rec in history:
        latest[rec.event.type] = rec
    return list(latest.values())


def test_runs_one_at_a_time():
    state = t.fold("thr_1", _history(ThreadCreated()))
    accepted = t.decide_run(state, "run_1")
    assert accepted.previous_status == "idle"
    busy = t.fold("thr_1", _history(ThreadCreated(), accepted))
    with pytest.raises(t.ThreadBusy) as refused:
        t.decide_run(busy, "run_2")
    assert refused.value.run_id == "run_1"
    with pytest.raises(t.ThreadBusy):
        t.decide_delete(busy)
    with pytest.raises(t.ThreadNotFound):
        t.decide_run(t.fold("thr_1", []), "run_1")


def test_the_state_from_the_latest_events_equals_the_state_from_the_history():
    history = _history(
        ThreadCreated(metadata={"u": 1}),
        ThreadRunAccepted(run_id="run_1"),
        ThreadCheckpointed(checkpoint_id="ckp_1", run_id="run_1", values={"n": 1}),
        ThreadRunEnded(run_id="run_1", status="idle"),
        ThreadRunAccepted(run_id="run_2"),
        ThreadCheckpointed(
            checkpoint_id="ckp_2", run_id="run_2", values={"n": 2}, interrupts=[{"value": "?"}]
        ),
    )
    for n in range(1, len(history) + 1):
        assert t.fold("thr_1", history[:n]) == t.fold("thr_1", _latest_of_each_type(history[:n]))
    state = t.fold("thr_1", history)
    assert (state.status, state.active_run_id, state.checkpoint_run_id) == ("busy", "run_2", "run_2")


@pytest.mark.parametrize(
    ("run_status", "checkpoint_interrupts", "expected"),
    [
        ("succeeded", [], "idle"),
        ("succeeded", [{"value": 1}], "interrupted"),
        ("failed", [], "error"),
        ("canceled", [], "error"),
    ],
)
def test_a_run_that_ended_settles_its_thread(run_status, checkpoint_interrupts, expected):
    events = [ThreadCreated(), ThreadRunAccepted(run_id="run_1")]
    if run_status == "succeeded":
        events.append(
            ThreadCheckpointed(checkpoint_id="c", run_id="run_1", values={}, interrupts=checkpoint_interrupts)
        )
    state = t.fold("thr_1", _history(*events))
    assert t.decide_settle(state, "run_1", None) is None  # still running: nothing to do
    ended = t.decide_settle(state, "run_1", run_status)
    assert ended is not None and ended.status == expected
    assert t.decide_settle(state, "run_2", run_status) is None  # not its run


def test_a_run_never_queued_gives_the_thread_back_its_status():
    events: list[Payload] = [
        ThreadCreated(),
        ThreadRunAccepted(run_id="run_1"),
        ThreadCheckpointed(checkpoint_id="c", run_id="run_1", values={}, interrupts=[{"value": 1}]),
        ThreadRunEnded(run_id="run_1", status="interrupted"),
    ]
    state = t.fold("thr_1", _history(*events))
    lost = t.fold("thr_1", _history(*events, t.decide_run(state, "run_2")))
    assert (lost.status, lost.previous_status) == ("busy", "interrupted")
    ended = t.decide_settle(lost, "run_2", None, gave_up=True)
    assert ended is not None and ended.status == "interrupted" and "never queued" in ended.reason


def test_a_copy_starts_interrupted_when_its_source_was_and_deleted_is_gone():
    copy = t.fold(
        "thr_1", _history(ThreadCreated(checkpoint_id="ckp_1", values={}, interrupts=[{"value": 1}]))
    )
    assert copy.status == "interrupted" and copy.checkpoint_seq == 1
    gone = t.fold("thr_1", _history(ThreadCreated(), ThreadDeleted()))
    assert not gone.exists


def test_a_stored_checkpoint_whose_interrupts_are_only_counted_still_interrupts_its_thread():
    ref = CheckpointRef(sha256="ab" * 32, size=10)
    counted = ThreadCheckpointed(checkpoint_id="c", run_id="run_1", ref=ref, interrupt_count=2)
    state = t.fold("thr_1", _history(ThreadCreated(), ThreadRunAccepted(run_id="run_1"), counted))
    ended = t.decide_settle(state, "run_1", "succeeded")
    assert ended is not None and ended.status == t.INTERRUPTED
    copy = t.fold("thr_1", _history(ThreadCreated(checkpoint_id="ckp_1", ref=ref, interrupt_count=1)))
    assert copy.status == t.INTERRUPTED and copy.checkpoint_interrupted


def test_checkpoint_events_written_before_interrupts_were_counted_still_decode():
    for payload in (ThreadCheckpointed(checkpoint_id="c", interrupts=[1]), ThreadCreated(interrupts=[1])):
        stored = json.loads(encode(make_event(payload, project="p", aggregate_id="thr_1", event_id="evt_1")))
        del stored["data"]["interrupt_count"]
        data = decode(json.dumps(stored).encode()).data
        assert data == payload and data.interrupted  # type: ignore[union-attr]
