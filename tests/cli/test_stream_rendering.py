"""The CLI's live view survives any event a server sends: it shows what it can and goes on."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from crewyard.cli.render import RunView, decode_event, event_line
from crewyard.client import SseMessage


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
