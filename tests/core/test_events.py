from datetime import UTC, datetime

import msgspec
import pytest

from crewyard.core.events import (
    PAYLOAD_TYPES,
    ApiKeyCreated,
    Log,
    RunQueued,
    ToolCalled,
    UnknownEventType,
    decode,
    encode,
    is_current,
    make_event,
    shown_to_clients,
)
from crewyard.core.ids import is_id, new_id


def test_every_event_round_trips_through_json():
    samples = {
        "run.queued": RunQueued(deployment_id="dep_x", input={"topic": "x"}, timeout_s=3.0),
        "tool.called": ToolCalled(tool="search", input={"q": 1}, agent="Researcher"),
        "log": Log(message="hello", level="info"),
    }
    for payload in samples.values():
        event = make_event(payload, project="acme", aggregate_id=new_id("run"), event_id=new_id("evt"))
        back = decode(encode(event))
        assert back == event
        assert back.data == payload


def test_wire_format_is_plain_json_with_type_and_data():
    t = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    event = make_event(ToolCalled(tool="t"), project="p", aggregate_id="run_1", event_id="evt_1", time=t)
    wire = msgspec.json.decode(encode(event))
    assert wire["type"] == "tool.called"
    assert wire["data"] == {"tool": "t", "input": None, "agent": None}
    assert wire["aggregate"] == "run" and wire["version"] == 1


def test_old_log_version_is_upcast_on_read():
    raw = (
        b'{"id":"evt_1","type":"log","version":0,"time":"2026-01-01T00:00:00Z","project":"p",'
        b'"aggregate":"run","aggregate_id":"run_1","data":{"line":"old text"}}'
    )
    assert not is_current(raw)
    event = decode(raw)
    assert event.version == 1
    assert isinstance(event.data, Log) and event.data.message == "old text"


def test_apikey_created_v1_is_read_as_a_key_that_grants_nothing():
    """Version 1 (before roles) sat under a project's subjects with no role or expiry."""
    raw = (
        b'{"id":"evt_1","type":"apikey.created","version":1,"time":"2026-01-01T00:00:00Z",'
        b'"project":"p","aggregate":"project","aggregate_id":"p",'
        b'"data":{"key_id":"key_1","name":"ci","token_sha256":"ab"}}'
    )
    event = decode(raw)
    assert event.version == 2 and isinstance(event.data, ApiKeyCreated)
    assert event.data.key_id == "key_1" and event.data.role == "read"
    assert event.data.expires_at is not None and event.data.expires_at.year == 1970


def test_unknown_type_is_refused():
    raw = (
        b'{"id":"evt_1","type":"nope","version":1,"time":"2026-01-01T00:00:00Z","project":"p",'
        b'"aggregate":"run","aggregate_id":"run_1","data":{}}'
    )
    with pytest.raises(UnknownEventType):
        decode(raw)


def test_catalogue_has_the_reference_names():
    for name in (
        "run.queued",
        "run.started",
        "run.completed",
        "run.failed",
        "run.canceled",
        "log",
        "artifact",
        "agent.started",
        "agent.completed",
        "agent.error",
        "task.started",
        "task.completed",
        "tool.called",
        "tool.result",
        "tool.error",
        "deployment.created",
        "deployment.build.log",
        "deployment.ready",
        "deployment.failed",
        "deployment.promoted",
        "run.cancel_requested",
        "env.set",
        "env.unset",
        "project.created",
        "apikey.created",
        "apikey.revoked",
    ):
        assert name in PAYLOAD_TYPES


def test_no_event_holding_a_webhook_url_is_shown_to_clients():
    # A read key gets only scheme://host/\u2026 of a webhook's URL from the API (chat services keep a
    # token in the path); following the project's events must not hand it the rest.
    holding_a_url = [t for t, cls in PAYLOAD_TYPES.items() if "url" in cls.__struct_fields__]
    assert {"webhook.created", "webhook.updated"} <= set(holding_a_url)
    assert [t for t in holding_a_url if shown_to_clients(t)] == []


def test_ids_sort_by_time_and_validate():
    a = new_id("run", now_ms=lambda: 1000)
    b = new_id("run", now_ms=lambda: 2000)
    assert a < b
    assert is_id(a, "run") and not is_id(a, "dep") and not is_id("run_bad")
