"""Crew environments: what a deployment's dependencies become, shared by the builder and runners.

The builder makes environments; runners only use what the builder made. Services import this
library, never each other.
"""

from ._base import BuildBackend, BuildFailed, BuildRequest, BuildResult, LogSink
from .venv import VenvBuilder

__all__ = ["BuildBackend", "BuildFailed", "BuildRequest", "BuildResult", "LogSink", "VenvBuilder"]
