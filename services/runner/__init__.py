"""The runner service: executes queued runs on an execution backend, ends each in one terminal event."""

from __future__ import annotations

import asyncio

from crewyard.servicekit import ServiceContext

from .backends import select_backend
from .service import Runner

__all__ = ["Runner", "create_service"]


async def create_service(context: ServiceContext) -> Runner:
    settings = context.settings
    # Choosing a backend asks the engine and the machine (a ping, a trial sandbox, each
    # interpreter's prefix): subprocesses and network calls, kept off the event loop.
    backend = await asyncio.to_thread(select_backend, settings)
    return Runner(settings, context.store, context.objects, backend, context.secrets())
