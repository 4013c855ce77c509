"""The HTTP API's request and response types: msgspec Structs, no I/O.

One module per resource family. The gateway takes and returns these types (Litestar decodes and
validates request bodies into them and documents them in the OpenAPI schema); the client and the
CLI decode answers into them. Every error is ``{"error": {"code", "message"}}`` (:mod:`.errors`).
"""

from . import (
    common,
    deployments,
    errors,
    events,
    health,
    keys,
    projects,
    runs,
    schedules,
    tables,
    threads,
    triggers,
    versions,
    webhooks,
)

__all__ = [
    "common",
    "deployments",
    "errors",
    "events",
    "health",
    "keys",
    "projects",
    "runs",
    "schedules",
    "tables",
    "threads",
    "triggers",
    "versions",
    "webhooks",
]
