"""The gateway: the HTTP API (REST, SSE, OpenAPI). Commands become events; queries read SQLite."""

from .app import create_app
from .context import Gateway
from .server import GatewayServer, create_service

__all__ = ["Gateway", "GatewayServer", "create_app", "create_service"]
