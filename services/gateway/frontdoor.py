"""The middleware around every request: the ``Host`` allow-list (DNS rebinding), a handler that
had to check its project (:func:`.access.allow`) but answered without doing so, and an event
stream whose route does not declare itself one (``opt["stream"]``), so holds none of its key's
stream places; and ``Cache-Control: private, no-store`` on every answer to a request the guard let
through that names no caching of its own (a console session's cookie is no ``Authorization``
header, which alone keeps a shared cache from storing an answer)."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar.types import ASGIApp, Receive, Scope, Send

from .access import STATE, STREAM_PLACE, Access, release_stream_place
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


def _unchecked(scope: Any, gateway: Gateway, start: Any) -> str | None:
    """Why a success must not leave (a handler's mistake the guard could not see), if it must not."""
    state = scope.get(STATE)
    if not isinstance(state, Access):
        return None
    if state.pending and not state.checked:
        return "answered without checking its project"
    streaming = any(
        k == b"content-type" and v.startswith(b"text/event-stream") for k, v in start.get("headers", ())
    )
    if (
        streaming
        and state.key is not None
        and gateway.settings.streams_per_key > 0
        and STREAM_PLACE not in scope
    ):
        return "streamed events without holding a stream place (its route lacks opt['stream'])"
    return None


#: What an authenticated answer that says nothing of caching is sent with: it is one key's view.
_PRIVATE = (b"cache-control", b"private, no-store")


def _private(start: Any) -> Any:
    """``start`` with :data:`_PRIVATE` added, unless it names its own ``Cache-Control``."""
    headers = start.get("headers", ())
    if any(k.lower() == b"cache-control" for k, _ in headers):
        return start
    return {**start, "headers": [*headers, _PRIVATE]}


class AccessMiddleware:
    """Answers 400 to a ``Host`` outside the allow-list (DNS rebinding), and 500 instead of a
    success when a handler did what its route's access rules do not cover (:func:`_unchecked`);
    marks what the guard let through as private (:func:`_private`)."""

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
            if message["type"] == "http.response.start" and isinstance(http.get(STATE), Access):
                message = _private(message)
            if message["type"] == "http.response.start" and message["status"] < 400:
                why = _unchecked(http, gateway, message)
                if why is not None:
                    log.error("%s %s %s: refused", http["method"], http["path"], why)
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
