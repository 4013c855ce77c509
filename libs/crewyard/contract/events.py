"""What the SSE endpoints send: one stored event per message.

``GET /v1/runs/{id}/events``, ``GET /v1/deployments/{id}/build-log``,
``GET /v1/threads/{id}/events``, ``GET /v1/projects/{project}/events`` and ``GET /v1/events``
answer ``text/event-stream``; each message is

    id: <stream sequence>      (send it back as Last-Event-ID to resume with no gap)
    event: <type>              (run.started, log, tool.called, deployment.ready …)
    data: <StreamEvent as JSON>

and a ``: ping`` comment keeps a quiet stream open. The AsyncAPI document
(``/v1/asyncapi.json``) has each type's ``data`` schema.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

MEDIA_TYPE: Literal["text/event-stream"] = "text/event-stream"


class StreamEvent(msgspec.Struct, kw_only=True):
    id: str
    type: str
    #: The version of ``data``'s schema for this type (upcast to today's before sending).
    version: int
    time: str
    project: str
    #: ``run``, ``deployment``, ``project``, ``thread``, ``table``, ``webhook`` …
    aggregate: str
    aggregate_id: str
    #: The payload; its fields depend on ``type`` (e.g. ``log``: ``message``, ``level``).
    data: dict[str, Any]
    correlation_id: str | None = None
    causation_id: str | None = None
