"""The notifier service: signed outgoing webhooks, delivered from the event stream."""

from __future__ import annotations

from crewyard.servicekit import ServiceContext

from .service import Notifier

__all__ = ["Notifier", "create_service"]


async def create_service(context: ServiceContext) -> Notifier:
    return Notifier(context.settings, context.store, context.secrets())
