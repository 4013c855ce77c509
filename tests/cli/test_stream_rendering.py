"""The CLI's live view survives any event a server sends: it shows what it can and goes on."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from crewyard.cli.render import RunView, decode_event, event_line, print_ndjson_event
from crewyard.client import SseMessage, SseParser


@pytest.mark.parametrize(
    "data",
    [
        "not json",
        "[" * 100_000,
        "1" + "0" * 5000,
        '{"type": "run.completed", "data": {"duration_ms": Infinity, "output": NaN}}',
        '{"type": "log", "data": "a string where an object belongs"}',
        '{"type": "artifact", "data": {"name": ["x"], "size": "big"}}',
        '{"type": "tool.called", "data": {"tool": {"a": 1}, "input": [1, {"b": null}]}}',
        '{"type": 5, "data": null, "time": "yesterday"}',
    ],
)
def test_odd_events_render_without_raising(data: str) -> None:
    event = decode_event(SseMessage(event="message", data=data, id="7"))
    console = Console(file=io.StringIO(), width=100)
    RunView(console, verbose=True).show(event)
    console.print(event_line(event))


@pytest.mark.parametrize("event_id", ["²", "٣", "1" * 5000, "-1", "x"])
def test_an_odd_event_id_is_no_sequence(event_id: str, capsys: pytest.CaptureFixture[str]) -> None:
    """An id "²" passed str.isdigit and failed int(): 'unexpected ValueError' in place of the event."""
    msg = SseMessage(event="log", data='{"type": "log", "data": {"message": "hi"}}', id=event_id)

    assert decode_event(msg).seq is None
    print_ndjson_event(msg)
    assert json.loads(capsys.readouterr().out)["seq"] is None


@pytest.mark.parametrize("retry", ["²", "1" * 5000])
def test_an_odd_retry_field_is_ignored(retry: str) -> None:
    parser = SseParser()
    assert parser.feed(f"retry: {retry}") is None
    assert parser.retry_ms is None
