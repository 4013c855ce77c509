"""The in-crew SDK: emit agent/task/tool events and logs, find the artifacts folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from . import _protocol

EVENT_TYPES = frozenset(
    {
        "agent.started",
        "agent.completed",
        "agent.error",
        "task.started",
        "task.completed",
        "tool.called",
        "tool.result",
        "tool.error",
        "log",
    }
)


def emit(event_type: str, **data: Any) -> None:
    """Emit a run event (``agent.started``, ``tool.called`` …) with its payload fields."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}; use one of {sorted(EVENT_TYPES)}")
    if _protocol.active():
        _protocol.send({"t": "event", "type": event_type, "data": data})
    else:  # outside crewyard (e.g. local development): show what would have been emitted
        print(f"[crewyard] {event_type} {data}", file=sys.stderr)


def log(message: str, level: str = "info") -> None:
    if _protocol.active():
        _protocol.send({"t": "log", "level": level, "message": message, "stream": "sdk"})
    else:
        print(message, file=sys.stderr)


def artifacts_dir() -> Path:
    """Where files for the run's artifacts go (``/app/artifacts`` in containers)."""
    path = Path(os.environ.get("CREWYARD_ARTIFACTS_DIR", "artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path
