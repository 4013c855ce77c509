"""The projector service: keeps the SQLite read model (``crewyard.readmodel``) in step with the
event stream."""

from __future__ import annotations

import asyncio

from crewyard.readmodel import ReadModel
from crewyard.servicekit import ServiceContext

from .service import Projector, rebuild

__all__ = ["Projector", "create_service", "rebuild"]


class _Reported:
    """The projector, with a read-model connection of its own for its readiness (started alone)."""

    def __init__(self, projector: Projector, rm: ReadModel) -> None:
        self.projector, self.rm = projector, rm

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await self.projector.run(stop)
        finally:
            await self.rm.close()


async def create_service(context: ServiceContext) -> Projector | _Reported:
    projector = Projector(context.store, context.settings.db_path)
    if context.readiness is None:
        return projector
    rm = await ReadModel.open(context.settings.db_path)
    context.readiness.position = rm.position
    return _Reported(projector, rm)
