"""The AsyncAPI 3.0 document of the event stream: one channel per event type, payload schemas
generated from the msgspec structs, so external consumers know what to subscribe to and read."""

from __future__ import annotations

from typing import Any

import msgspec

from crewyard import __version__

from .events import PAYLOAD_TYPES, Event, Payload
from .subjects import PLATFORM_PREFIX, PREFIX, SECRET_SCOPE


def _address(cls: type[Payload], name: str) -> tuple[str, dict[str, Any]]:
    aggregate_id = {"description": f"id of the {cls.AGGREGATE}"}
    if cls.SCOPE == "platform":
        return f"{PLATFORM_PREFIX}.{cls.AGGREGATE}.{{aggregateId}}.{name}", {"aggregateId": aggregate_id}
    if cls.SCOPE == "secret":
        project = {"description": "project name (the project aggregate's id)"}
        return f"{PREFIX}.{SECRET_SCOPE}.{cls.AGGREGATE}.{{project}}.{name}", {"project": project}
    return (
        f"{PREFIX}.{{project}}.{cls.AGGREGATE}.{{aggregateId}}.{name}",
        {"project": {"description": "project name"}, "aggregateId": aggregate_id},
    )


def document() -> dict[str, Any]:
    names = sorted(PAYLOAD_TYPES)
    _, components = msgspec.json.schema_components(
        [PAYLOAD_TYPES[n] for n in names] + [Event], ref_template="#/components/schemas/{name}"
    )
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for name in names:
        cls = PAYLOAD_TYPES[name]
        key = name.replace(".", "_")
        address, parameters = _address(cls, name)
        channels[key] = {
            "address": address,
            "parameters": parameters,
            "messages": {key: {"$ref": f"#/components/messages/{key}"}},
        }
        messages[key] = {
            "name": name,
            "title": name,
            "summary": (cls.__doc__ or "").strip().split("\n")[0] or name,
            "contentType": "application/json",
            "payload": {
                "allOf": [{"$ref": "#/components/schemas/Event"}],
                "properties": {
                    "type": {"const": name},
                    "version": {"const": cls.VERSION},
                    "data": {"$ref": f"#/components/schemas/{cls.__name__}"},
                },
            },
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "crewyard events",
            "version": __version__,
            "description": (
                "Every state change is an event in the JetStream stream CREWYARD_EVENTS. Subjects: "
                f"{PREFIX}.<project>.<aggregate>.<aggregate_id>.<type>; subscribe with wildcards, e.g. "
                f"{PREFIX}.acme.run.> or {PREFIX}.*.run.*.run.failed. The stream sequence is each "
                "event's position and its SSE id. Secret-bearing events (env.set, env.unset) use the "
                f"reserved scope {SECRET_SCOPE} instead of the project, so everything under "
                f"{PREFIX}.<project>.> is safe to hand to that project's outside consumers. API keys "
                f"and consumer credentials live in the platform stream CREWYARD_PLATFORM "
                f"({PLATFORM_PREFIX}.<aggregate>.<id>.<type>), readable by the platform only. Outside "
                "consumers get NATS credentials for one durable consumer of one project "
                "(`crewyard consumers create`)."
            ),
        },
        "channels": channels,
        "operations": {
            f"receive_{k}": {"action": "receive", "channel": {"$ref": f"#/channels/{k}"}} for k in channels
        },
        "components": {"schemas": components, "messages": messages},
    }
