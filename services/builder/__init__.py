"""The builder service: turns deployments into runnable environments (venv or container image)."""

from .service import Builder

__all__ = ["Builder"]
