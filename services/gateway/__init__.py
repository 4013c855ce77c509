"""The gateway: the HTTP API (REST, SSE, OpenAPI). Commands become events; queries read SQLite."""

from .app import create_app
from .context import Gateway

__all__ = ["Gateway", "create_app"]
