"""The gateway as a service: the Litestar app on uvicorn, stopped by the platform's ``stop``."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import uvicorn
from rich.console import Console

from crewyard.httplimits import LOOPBACK, ConnectionLimits, limited_protocol, proxies
from crewyard.readmodel import ReadModel
from crewyard.servicekit import ServiceContext

from .app import consumers_for, create_app
from .context import Gateway
from .feedstream import KeepServerSend
from .keys import admin_key_path, open_keys
from .sessions import open_ended_sessions

console = Console(stderr=True)


class GatewayServer:
    def __init__(self, gateway: Gateway, server: uvicorn.Server, listener: socket.socket | None) -> None:
        self.gateway, self.server = gateway, server
        #: The port, already listening (handed over by the stand-in that answered until now).
        self.listener = listener

    async def run(self, stop: asyncio.Event) -> None:
        sockets = None if self.listener is None else [self.listener]
        task = asyncio.create_task(self.server.serve(sockets=sockets))
        waiting = asyncio.create_task(stop.wait())
        await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        stop.set()  # the server may have ended first (it handles SIGINT/SIGTERM itself)
        self.gateway.closing.set()  # SSE streams end with a retry hint; requests in flight finish
        self.server.should_exit = True
        try:
            await task
        finally:
            if self.gateway.keys is not None:
                await self.gateway.keys.stop()
            if self.gateway.ended_sessions is not None:
                await self.gateway.ended_sessions.stop()
            await self.gateway.rm.close()


async def create_service(context: ServiceContext) -> GatewayServer:
    settings, readiness = context.settings, context.readiness
    if readiness is None:
        raise ValueError("the gateway needs its readiness (it answers /readyz on the API port)")
    rm = await ReadModel.open(settings.db_path)
    readiness.position = rm.position
    registry, first = await open_keys(settings, context.store)
    ended_sessions = await open_ended_sessions(settings, context.store)
    if first:
        _announce_admin_key(first, admin_key_path(settings))
    elif registry is None:
        console.print("[bold red]API keys are OFF (--no-auth)[/]: anyone on this machine may call the API")
    gateway = Gateway(
        settings=settings,
        store=context.store,
        objects=context.objects,
        rm=rm,
        secrets=context.secrets(),
        readiness=readiness,
        keys=registry,
        ended_sessions=ended_sessions,
        consumers=consumers_for(settings, context.store),
    )
    config = uvicorn.Config(
        KeepServerSend(create_app(settings, gateway=gateway)),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,  # one log line per request, which logs.py silences anyway
        lifespan="on",
        timeout_graceful_shutdown=3,
    )
    # A reverse proxy trusted for X-Forwarded-For (FORWARDED_ALLOW_IPS, as uvicorn reads it)
    # limits its own clients: its connections are not counted per address.
    config.http = limited_protocol(
        ConnectionLimits(
            head_timeout_s=settings.header_timeout_s,
            per_address=settings.connections_per_address,
            exempt=LOOPBACK + proxies(config.forwarded_allow_ips),
        )
    )
    return GatewayServer(gateway, uvicorn.Server(config), context.listener)


def _announce_admin_key(token: str, path: Path) -> None:
    """The first admin key, shown this once (only its hash is stored; the copy in the data dir
    lets the CLI on this machine work without it being copied)."""
    console.print(
        f"[bold yellow]First admin API key[/] (shown once, also in {path}, readable by you only):\n"
        f"  {token}\n"
        "  Use it: `crewyard login --api URL` stores it, or send `Authorization: Bearer <key>`.\n"
        "  `crewyard keys create` makes narrower keys.",
        highlight=False,
        soft_wrap=True,
    )
