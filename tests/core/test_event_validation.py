"""What the core's decoder refuses is exactly what no writer may append (no poison events)."""

from datetime import UTC, datetime

import pytest

from crewyard.core import run_state as rs
from crewyard.core.bounds import MAX_JSON_DEPTH, OutOfBounds, check_json
from crewyard.core.deployment_state import fold_project
from crewyard.core.events import (
    ArtifactStored,
    InvalidEvent,
    ProjectLimitsSet,
    Recorded,
    RunCompleted,
    RunQueued,
    RunStarted,
    ToolResult,
    UnknownEventType,
    decode,
    encode,
    encode_checked,
    make_event,
    unreadable,
)
from crewyard.core.ids import new_id

T = datetime(2026, 1, 1, tzinfo=UTC)


def _raw(
    data: str = '{"deployment_id":"dep_1","input":{}}',
    *,
    type_: str = "run.queued",
    version: str = "1",
    project: str = '"acme"',
    aggregate: str = '"run"',
    aggregate_id: str = '"run_1"',
) -> bytes:
    return (
        f'{{"id":"evt_1","type":"{type_}","version":{version},"time":"2026-01-01T00:00:00Z",'
        f'"project":{project},"aggregate":{aggregate},"aggregate_id":{aggregate_id},"data":{data}}}'
    ).encode()


def _nested(depth: int) -> object:
    """``depth`` lists, one inside the other."""
    value: object = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_a_plain_event_decodes():
    event = decode(_raw())
    assert isinstance(event.data, RunQueued) and event.aggregate_id == "run_1"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"garbage",
        b"\xff\xfe",
        b"[]",
        b'{"id": 1}',
        b"[" * 100_000,
        _raw(data='{"deployment_id":"dep_1","input":{},"timeout_s":1' + "0" * 400 + "}"),
        _raw(data='{"deployment_id":"dep_1","input":{},"timeout_s":1e400}'),
        _raw(data='{"deployment_id":"dep_1","input":{},"timeout_s":-5}'),
        _raw(data='{"deployment_id":"dep_1","input":{"n":1' + "0" * 30 + "}}"),
        _raw(data='{"deployment_id":"dep_1","input":{"n":1' + "0" * 5000 + "}}"),
        _raw(data='{"deployment_id":"dep_1","input":' + "[" * 70 + "]" * 70 + "}"),
        _raw(data='{"deployment_id":"dep_1","input":' + "[" * 5000 + "]" * 5000 + "}"),
        _raw(data='"not an object"'),
        _raw(project='"acme\\n"'),
        _raw(project='"Acme"'),
        _raw(project='"a.b"'),
        _raw(aggregate_id='"run_1\\n"'),
        _raw(aggregate_id='"run.1"'),
        _raw(aggregate='"deployment"'),
        _raw(aggregate='"nope"'),
        _raw(version="-1"),
        _raw(version="99999999999999999999999"),
        _raw(type_="run.exploded"),
        _raw(
            type_="deployment.created",
            aggregate='"deployment"',
            data='{"source_digest":"sha256-' + "0" * 64 + '","source_size":1,"config":{"entrypoint":5}}',
        ),
        _raw(
            type_="project.limits_set",
            aggregate='"project"',
            data='{"max_concurrent_runs":1' + "0" * 30 + "}",
        ),
    ],
)
def test_bad_bytes_raise_invalid_event_and_nothing_else(raw):
    with pytest.raises(InvalidEvent):
        decode(raw)


def test_a_newer_version_than_known_is_unknown_not_guessed():
    with pytest.raises(UnknownEventType, match="newer"):
        decode(_raw(version="3"))


def test_nesting_up_to_the_limit_is_accepted_and_one_more_is_not():
    ok = make_event(
        ToolResult(tool="t", output=_nested(MAX_JSON_DEPTH)), project="p", aggregate_id="run_1", event_id="e1"
    )
    assert decode(encode_checked(ok)) == ok
    deep = make_event(
        ToolResult(tool="t", output=_nested(MAX_JSON_DEPTH + 1)),
        project="p",
        aggregate_id="run_1",
        event_id="e1",
    )
    with pytest.raises(InvalidEvent, match=f"deeper than {MAX_JSON_DEPTH}"):
        encode_checked(deep)


@pytest.mark.parametrize(
    "payload",
    [
        RunQueued(deployment_id="dep_1", input={}, timeout_s=1e300),
        RunQueued(deployment_id="dep_1", input={"n": 10**400}),
        RunQueued(deployment_id="dep_1", input={"n": 10**5000}),
        RunCompleted(output={"deep": _nested(1000)}),
        RunCompleted(duration_ms=-1),
        RunStarted(runner_id="r", backend="b", isolated=True, attempt=0),
        ProjectLimitsSet(max_concurrent_runs=0),
        ArtifactStored(name="a", size=2**70, content_type="x", sha256="y"),
    ],
)
def test_a_writer_cannot_encode_what_the_decoder_refuses(payload):
    event = make_event(payload, project="acme", aggregate_id=new_id("run"), event_id=new_id("evt"))
    with pytest.raises(InvalidEvent):
        encode_checked(event)


def test_a_project_name_with_a_trailing_newline_cannot_be_written():
    event = make_event(RunCompleted(), project="acme\n", aggregate_id="run_1", event_id="evt_1", time=T)
    with pytest.raises(InvalidEvent):
        encode_checked(event)
    assert encode_checked(
        make_event(RunCompleted(), project="acme", aggregate_id="run_1", event_id="e", time=T)
    )


def test_check_json_measures_any_depth_without_recursing():
    check_json(_nested(MAX_JSON_DEPTH))
    with pytest.raises(OutOfBounds, match="input is nested deeper"):
        check_json(_nested(100_000), "input")
    with pytest.raises(OutOfBounds, match="64 bits"):
        check_json({"a": [1, 2, {"b": -(2**64)}]})
    check_json({"a": [True, 2**64 - 1, -(2**63), 1.5, None, "x"]})


def test_an_unreadable_event_keeps_its_place_in_a_fold():
    run_id = "run_1"
    queued = Recorded(
        3,
        make_event(RunQueued(deployment_id="d", input={}), project="acme", aggregate_id=run_id, event_id="e"),
    )
    state = rs.fold(run_id, [queued, unreadable(7, "", "run", run_id, "garbage")])
    assert state.status == rs.PENDING and state.project == "acme"
    assert state.version == 7  # a writer's expected sequence is the aggregate's true last one
    project = fold_project("acme", [unreadable(9, "acme", "project", "acme", "garbage")])
    assert project.version == 9 and not project.exists


def test_encode_is_unchanged_for_valid_events():
    event = make_event(
        RunQueued(deployment_id="d", input={"x": 1}), project="acme", aggregate_id="r", event_id="e"
    )
    assert encode_checked(event) == encode(event)
