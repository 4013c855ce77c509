"""The builder service: turns deployments into runnable environments (venv or container image)."""

from __future__ import annotations

import os
import socket

from crewyard.servicekit import ServiceContext

from .backends import select_build_backend
from .service import Builder

__all__ = ["Builder", "create_service"]


async def create_service(context: ServiceContext) -> Builder:
    settings = context.settings
    backend = select_build_backend(settings, settings.cache_dir, context.objects)
    return Builder(settings, context.store, context.objects, backend, f"{socket.gethostname()}-{os.getpid()}")
