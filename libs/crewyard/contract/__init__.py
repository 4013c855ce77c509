"""The HTTP API's request and response types: msgspec Structs, no I/O.

One module per resource family. The gateway takes and returns these types (Litestar decodes and
validates request bodies into them and documents them in the OpenAPI schema); the CLI decodes
answers into them. Errors are not here: every error is ``{"error": {"code", "message"}}``.
"""

from . import schedules, triggers, webhooks

__all__ = ["schedules", "triggers", "webhooks"]
