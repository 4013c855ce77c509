"""The build interface, shared by the builder's backends (venv, docker) and the runners.

A build turns a deployment's source folder into what the runner executes: a virtual
environment (for the process and bwrap backends) or a container image (docker). Builds are
content-addressed: ``env_digest`` depends only on what is installed (dependency set, Python,
base image, runtime version), so an unchanged crew is never rebuilt and identical crews share.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

import msgspec

from crewyard.core.crewfile import CrewConfig
from crewyard.errors import CrewyardError

#: Receives (line, stream) of build output as it happens.
LogSink = Callable[[str, str], Awaitable[None]]


class BuildFailed(CrewyardError):
    """The crew cannot be built (its dependencies fail to install, …); the message says why."""


class BuildRequest(msgspec.Struct, kw_only=True):
    deployment_id: str
    project: str
    source_dir: Path
    source_digest: str
    config: CrewConfig


class BuildResult(msgspec.Struct, kw_only=True):
    backend: str
    env_digest: str
    cached: bool
    env_sha256: str | None = None  # of the environment's archive in the object store (venv)
    venv_dir: Path | None = None
    image: str | None = None


class BuildBackend(Protocol):
    name: str

    async def build(self, request: BuildRequest, log: LogSink) -> BuildResult: ...

    async def sweep(self) -> int:
        """Remove what builders that died left running (now and then, by every builder); how
        many things were removed."""
        ...
