"""The small HTTP listener of a service started alone: ``/healthz`` and ``/readyz`` (and whatever
else is added to ``routes`` later, e.g. ``/metrics``), so that probes have something to ask.

A bare ASGI app on uvicorn (already the gateway's server): uvicorn parses HTTP, this only routes
GET/HEAD by exact path. The socket is bound before serving, so a port that is taken fails the
service's start with a clear message instead of an exit from inside uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import msgspec
import uvicorn

from crewyard import __version__
from crewyard.errors import CrewyardError
from crewyard.httplimits import ConnectionLimits, limited_protocol

from ._readiness import Readiness

log = logging.getLogger("crewyard.health")


class Reply(msgspec.Struct, frozen=True):
    status: int
    body: bytes
    content_type: str = "application/json"


def json_reply(status: int, value: Any) -> Reply:
    return Reply(status, msgspec.json.encode(value))


Route = Callable[[], Awaitable[Reply]]


def starting(readiness: Readiness) -> Route:
    """The answer of a service's port before the service is up: 503, and what it waits for."""

    async def unavailable() -> Reply:
        return json_reply(
            503, _error("unavailable", f"starting: waiting for {readiness.waiting_for}; try again")
        )

    return unavailable


def health_routes(readiness: Readiness) -> dict[str, Route]:
    async def healthz() -> Reply:
        # Alive: the process answers. Deliberately says nothing about NATS or the read model.
        return json_reply(200, {"status": "ok", "service": readiness.service, "version": __version__})

    async def readyz() -> Reply:
        report = await readiness.check()
        return json_reply(200 if report.ready else 503, report.body())

    return {"/healthz": healthz, "/readyz": readyz}


class HealthError(CrewyardError, OSError):
    """The listener cannot start (e.g. its port is taken)."""


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The service owns SIGINT/SIGTERM (it stops the listener itself); uvicorn must not take them.
        yield


class HealthListener:
    def __init__(
        self,
        routes: dict[str, Route],
        *,
        host: str,
        port: int,
        fallback: Route | None = None,
        what: str = "health listener",
        port_hint: str = "set CREWYARD_HEALTH_PORT to a free port, or 0 for any",
        limits: ConnectionLimits | None = None,
    ) -> None:
        self.routes = routes
        #: What one connection may cost before a request of it is answered (see httplimits).
        self.limits = limits or ConnectionLimits()
        #: Said when the port is taken: what listens, and how to move it.
        self.what, self.port_hint = what, port_hint
        #: Answers every other request (any method) instead of 404/405: a stand-in for an API
        #: that is not up yet says 503, so that clients retry.
        self.fallback = fallback
        self.host, self.port = host, port
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> str:
        """Bind and serve in the background; returns the base URL (port 0 picks a free one)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # The protocol number matters: asyncio turns Nagle's algorithm off only on sockets that
        # say they are TCP, and accepted connections inherit it from this one — without it every
        # response written as head then body waited for the client's delayed ACK (40 ms).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise HealthError(
                f"{self.what} cannot listen on {self.host}:{self.port}: {exc.strerror or exc}"
                f" ({self.port_hint})"
            ) from None
        self.port = int(sock.getsockname()[1])
        sock.listen(2048)  # now: a client told the URL may connect before the server's task runs
        self._sock = sock
        config = uvicorn.Config(
            self._app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            interface="asgi3",
            limit_concurrency=64,
            timeout_keep_alive=5,
            http=limited_protocol(self.limits),
        )
        self._server = _Server(config)
        # The server gets a copy of the socket: stopping it closes that copy, while ``detach``
        # can hand the still-listening original on.
        self._task = asyncio.create_task(self._server.serve(sockets=[sock.dup()]))
        return self.url

    async def stop(self) -> None:
        sock = await self.detach()
        if sock is not None:
            sock.close()

    async def detach(self) -> socket.socket | None:
        """Stop answering, but keep the port: returns the listening socket for the server that
        takes over (connections arriving meanwhile wait in its backlog instead of being refused,
        and no other process can take the port in between)."""
        if self._server is None or self._task is None:
            return None
        self._server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._task, 5)
        sock, self._sock = self._sock, None
        return sock

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        method = scope["method"]
        route = self.routes.get(scope["path"])
        if self.fallback is not None and (route is None or method not in ("GET", "HEAD")):
            route, method = self.fallback, "GET"
        if method not in ("GET", "HEAD"):
            reply = json_reply(405, _error("method_not_allowed", f"{method} is not allowed here"))
        elif route is None:
            reply = json_reply(404, _error("not_found", f"{scope['path'][:200]} not found"))
        else:
            try:
                reply = await route()
            except Exception:
                log.exception("health route %s failed", scope["path"])
                reply = json_reply(500, _error("internal", "health check failed; see the service log"))
        headers = [
            (b"content-type", reply.content_type.encode()),
            (b"content-length", str(len(reply.body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else reply.body})


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}
