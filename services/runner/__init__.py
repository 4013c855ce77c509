"""The runner service: executes queued runs on an execution backend, ends each in one terminal event."""

from __future__ import annotations

from crewyard.servicekit import ServiceContext

from .backends import select_backend
from .service import Runner

__all__ = ["Runner", "create_service"]


async def create_service(context: ServiceContext) -> Runner:
    settings = context.settings
    return Runner(settings, context.store, context.objects, select_backend(settings), context.secrets())
