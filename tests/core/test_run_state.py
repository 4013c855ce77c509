from datetime import UTC, datetime

import pytest

from crewyard.core import run_state as rs
from crewyard.core.events import (
    Recorded,
    RunCanceled,
    RunCancelRequested,
    RunCompleted,
    RunQueued,
    RunStarted,
    make_event,
)

T = datetime(2026, 1, 1, tzinfo=UTC)


def _history(*payloads):
    return [
        Recorded(i + 1, make_event(p, project="p", aggregate_id="run_1", event_id=f"evt_{i}", time=T))
        for i, p in enumerate(payloads)
    ]


QUEUED = RunQueued(deployment_id="dep_1", input={"a": 1})
STARTED = RunStarted(runner_id="r1", backend="process", isolated=False)


def test_queued_run_is_pending_and_can_start():
    state = rs.fold("run_1", _history(QUEUED))
    assert state.status == rs.PENDING and state.version == 1
    started = rs.decide_start(state, runner_id="r", backend="b", isolated=True, entrypoint="m:f")
    assert started.attempt == 1


def test_cancel_of_pending_ends_it_and_of_running_asks_the_runner():
    assert isinstance(rs.decide_cancel(rs.fold("run_1", _history(QUEUED))), RunCanceled)
    running = rs.fold("run_1", _history(QUEUED, STARTED))
    assert isinstance(rs.decide_cancel(running), RunCancelRequested)
    asked = rs.fold("run_1", _history(QUEUED, STARTED, RunCancelRequested()))
    with pytest.raises(rs.InvalidTransition):
        rs.decide_cancel(asked)


def test_finished_run_cannot_be_canceled_or_finished_again():
    done = rs.fold("run_1", _history(QUEUED, STARTED, RunCompleted(output=1)))
    assert done.is_terminal and done.status == rs.SUCCEEDED
    with pytest.raises(rs.InvalidTransition, match="Cannot cancel run with status: succeeded"):
        rs.decide_cancel(done)
    with pytest.raises(rs.InvalidTransition):
        rs.decide_finish(done, RunCompleted())
    with pytest.raises(rs.InvalidTransition):
        rs.decide_start(done, runner_id="r", backend="b", isolated=True, entrypoint="m:f")


def test_only_a_running_run_finishes():
    pending = rs.fold("run_1", _history(QUEUED))
    with pytest.raises(rs.InvalidTransition):
        rs.decide_finish(pending, RunCompleted())
    running = rs.fold("run_1", _history(QUEUED, STARTED))
    assert isinstance(rs.decide_finish(running, RunCompleted()), RunCompleted)


def _retry(state: rs.RunState, max_attempts: int = 3) -> object:
    return rs.decide_retry(
        state, reason="runner_lost", error_message="lost", max_attempts=max_attempts, backoff_s=(1.0, 5.0)
    )


def test_an_infrastructure_failure_is_retried_with_backoff_until_the_attempts_are_used():
    from crewyard.core.events import RunFailed, RunRetrying

    first = rs.fold("run_1", _history(QUEUED, STARTED))
    retry = _retry(first)
    assert isinstance(retry, RunRetrying) and (retry.attempt, retry.delay_s) == (1, 1.0)
    third = rs.fold(
        "run_1", _history(QUEUED, RunStarted(runner_id="r3", backend="process", isolated=False, attempt=3))
    )
    failed = _retry(third)
    assert isinstance(failed, RunFailed) and failed.reason == "runner_lost"
    assert "after 3 attempts" in failed.error_message


def test_a_lost_attempt_of_a_run_someone_asked_to_cancel_ends_it_canceled_not_retried():
    state = rs.fold("run_1", _history(QUEUED, STARTED, RunCancelRequested()))
    assert isinstance(_retry(state), RunCanceled)


def test_a_finished_run_is_never_retried():
    state = rs.fold("run_1", _history(QUEUED, STARTED, RunCompleted(output=1)))
    with pytest.raises(rs.InvalidTransition):
        _retry(state)
