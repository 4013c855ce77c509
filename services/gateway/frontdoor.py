"""The middleware around every request: the ``Host`` allow-list (DNS rebinding), and a handler
that had to check its project (:func:`.access.allow`) but answered without doing so."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar.types import ASGIApp, Receive, Scope, Send

from .access import STATE, Access, release_stream_place
from .context import Gateway

log = logging.getLogger("crewyard.gateway")


def host_allowed(host_header: str, allowed: tuple[str, ...]) -> bool:
    """``Host`` (its port aside) against the allow-list (``*``, ``name``, ``*.domain``)."""
    host = host_header.strip().lower()
    if host.startswith("["):
        host = host[: host.find("]") + 1] if "]" in host else host
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    host = host.rstrip(".")
    for entry in allowed:
        if entry == "*" or entry == host or (entry.startswith("*.") and host.endswith(entry[1:])):
            return True
    return False


_error = msgspec.json.Encoder()


def _refusal(status: int, code: str, message: str) -> tuple[Any, Any]:
    body = _error.encode({"error": {"code": code, "message": message}})
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }
    return start, {"type": "http.response.body", "body": body}


class AccessMiddleware:
    """Answers 400 to a ``Host`` outside the allow-list (DNS rebinding), and 500 instead of a
    success when a handler that had to check the project (:func:`allow`) did not."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        http: Any = scope
        if http["type"] != "http":
            await self.app(scope, receive, send)
            return
        gateway: Gateway = http["app"].state.gateway
        host = next((v.decode("latin-1") for k, v in http["headers"] if k == b"host"), "")
        if not host_allowed(host, gateway.allowed_hosts):
            start, body = _refusal(400, "bad_host", f"this API does not answer to the host {host[:100]!r}")
            await send(start)
            await send(body)
            return
        refused = False

        async def checked_send(message: Any) -> None:
            nonlocal refused
            if message["type"] == "http.response.start" and message["status"] < 400:
                state = http.get(STATE)
                if isinstance(state, Access) and state.pending and not state.checked:
                    log.error(
                        "%s %s answered without checking its project: refused", http["method"], http["path"]
                    )
                    refused = True
                    start, body = _refusal(500, "internal", "this route's access was not checked")
                    await send(start)
                    await send(body)
                    return
            if refused:
                return
            await send(message)

        try:
            await self.app(scope, receive, checked_send)
        finally:  # an event stream's response has ended (or never began): its place is free
            release_stream_place(gateway, http)
