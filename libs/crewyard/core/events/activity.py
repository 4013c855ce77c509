"""What a crew does while it runs: logs, agents, tasks, tools, artifacts.

These are chatty and written only by the runner that owns the run; their fields follow the
reference product's streaming guide so existing SSE clients read them unchanged.
"""

from __future__ import annotations

from typing import Any

from ..bounds import ArtifactName, ContentType, Count, Sha256
from ._base import Payload


class Log(Payload, frozen=True, kw_only=True):
    TYPE = "log"
    AGGREGATE = "run"
    message: str
    level: str = "info"
    stream: str = "stdout"
    timestamp: str = ""


class AgentStarted(Payload, frozen=True, kw_only=True):
    TYPE = "agent.started"
    AGGREGATE = "run"
    agent: str
    task: str | None = None


class AgentCompleted(Payload, frozen=True, kw_only=True):
    TYPE = "agent.completed"
    AGGREGATE = "run"
    agent: str
    task: str | None = None
    output: Any = None


class AgentError(Payload, frozen=True, kw_only=True):
    TYPE = "agent.error"
    AGGREGATE = "run"
    agent: str
    error: str


class TaskStarted(Payload, frozen=True, kw_only=True):
    TYPE = "task.started"
    AGGREGATE = "run"
    task: str
    agent: str | None = None


class TaskCompleted(Payload, frozen=True, kw_only=True):
    TYPE = "task.completed"
    AGGREGATE = "run"
    task: str
    agent: str | None = None
    output: Any = None


class ToolCalled(Payload, frozen=True, kw_only=True):
    TYPE = "tool.called"
    AGGREGATE = "run"
    tool: str
    input: Any = None
    agent: str | None = None


class ToolResult(Payload, frozen=True, kw_only=True):
    TYPE = "tool.result"
    AGGREGATE = "run"
    tool: str
    output: Any = None


class ToolError(Payload, frozen=True, kw_only=True):
    TYPE = "tool.error"
    AGGREGATE = "run"
    tool: str
    error: str


class ArtifactStored(Payload, frozen=True, kw_only=True):
    TYPE = "artifact"
    AGGREGATE = "run"
    name: ArtifactName
    size: Count
    content_type: ContentType
    sha256: Sha256


ACTIVITY_EVENTS: tuple[type[Payload], ...] = (
    Log,
    AgentStarted,
    AgentCompleted,
    AgentError,
    TaskStarted,
    TaskCompleted,
    ToolCalled,
    ToolResult,
    ToolError,
    ArtifactStored,
)
#: Event types a crew may emit itself through the SDK.
CREW_EMITTABLE = frozenset(cls.TYPE for cls in ACTIVITY_EVENTS if cls is not ArtifactStored)
