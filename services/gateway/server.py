"""The gateway as a service: the Litestar app on uvicorn, stopped by the platform's ``stop``."""

from __future__ import annotations

import asyncio

import uvicorn

from crewyard.readmodel import ReadModel
from crewyard.servicekit import ServiceContext

from .app import create_app
from .context import Gateway


class GatewayServer:
    def __init__(self, gateway: Gateway, server: uvicorn.Server) -> None:
        self.gateway, self.server = gateway, server

    async def run(self, stop: asyncio.Event) -> None:
        task = asyncio.create_task(self.server.serve())
        waiting = asyncio.create_task(stop.wait())
        await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        stop.set()  # the server may have ended first (it handles SIGINT/SIGTERM itself)
        self.gateway.closing.set()  # SSE streams end with a retry hint; requests in flight finish
        self.server.should_exit = True
        try:
            await task
        finally:
            await self.gateway.rm.close()


async def create_service(context: ServiceContext) -> GatewayServer:
    settings, readiness = context.settings, context.readiness
    if readiness is None:
        raise ValueError("the gateway needs its readiness (it answers /readyz on the API port)")
    rm = await ReadModel.open(settings.db_path)
    readiness.position = rm.position
    gateway = Gateway(
        settings=settings,
        store=context.store,
        objects=context.objects,
        rm=rm,
        secrets=context.secrets(),
        readiness=readiness,
    )
    config = uvicorn.Config(
        create_app(settings, gateway=gateway),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=3,
    )
    return GatewayServer(gateway, uvicorn.Server(config))
