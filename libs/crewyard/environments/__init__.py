"""Crew environments: what a deployment's dependencies become, shared by the builder and runners.

The builder makes environments (:class:`VenvBuilder`, in a build sandbox) and publishes them;
runners only ever use what was published (:class:`EnvironmentStore`), checked by sha256. Services
import this library, never each other. Design note: ``README.md`` beside this file.
"""

from ._base import BuildBackend, BuildFailed, BuildRequest, BuildResult, LogSink
from .archive import ArchiveCorrupt
from .pythons import Interpreter
from .sandbox import ENV_PATH, BuildLimits
from .store import EnvironmentMissing, EnvironmentStore, Manifest
from .venv import VenvBuilder

__all__ = [
    "ENV_PATH",
    "ArchiveCorrupt",
    "BuildBackend",
    "BuildFailed",
    "BuildLimits",
    "BuildRequest",
    "BuildResult",
    "EnvironmentMissing",
    "EnvironmentStore",
    "Interpreter",
    "LogSink",
    "Manifest",
    "VenvBuilder",
]
