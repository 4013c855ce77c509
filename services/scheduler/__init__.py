"""The scheduler service: cron schedules, exactly once per planned time."""

from __future__ import annotations

from crewyard.servicekit import ServiceContext

from .service import Scheduler, clock_from

__all__ = ["Scheduler", "clock_from", "create_service"]


async def create_service(context: ServiceContext) -> Scheduler:
    return Scheduler(context.settings, context.store)
