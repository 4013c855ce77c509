"""The execution backend interface, shared by docker, bwrap and process.

A backend starts one run and returns a :class:`RunHandle` early; the runner then reads output
lines as they come, waits for the exit, kills with a grace period when asked, has the backend
make the run's artifacts available on the host, and removes what the run left behind.

Inside every backend the same runtime (``python -m crewyard_runtime``) runs the crew with:
- ``CREWYARD_ENTRYPOINT``, ``CREWYARD_FRAMEWORK``, ``CREWYARD_RUN_ID``;
- ``CREWYARD_INPUT_FILE`` — the input as JSON;
- ``CREWYARD_ARTIFACTS_DIR`` — a writable, initially empty folder (``/app/artifacts`` in a
  container), which is also the working directory, so relative output files are collected too;
- the project's environment variables.
Output: the runtime's protocol lines on stdout (stream ``"proto"``), everything else on stderr
(stream ``"stderr"``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import msgspec

from crewyard.errors import CrewyardError

ARTIFACTS_IN_CONTAINER = "/app/artifacts"
SOURCE_IN_CONTAINER = "/app"


class BackendError(CrewyardError):
    """The backend could not start or manage a run (infrastructure, not the crew's fault)."""


class BackendUnavailable(BackendError):
    """The backend cannot be used on this host (engine down, binary missing)."""


class Limits(msgspec.Struct, kw_only=True):
    memory_bytes: int | None = 1024 * 1024 * 1024
    cpus: float | None = 1.0
    pids: int | None = 256
    file_size_bytes: int | None = 1024 * 1024 * 1024
    network: str = "default"  # default | none | host


class RunSpec(msgspec.Struct, kw_only=True):
    run_id: str
    project: str
    deployment_id: str
    runner_id: str
    framework: str
    entrypoint: str
    input: dict[str, Any]
    env: dict[str, str]
    source_dir: Path
    runtime_dir: Path  # folder holding the crewyard_runtime package
    venv_dir: Path | None = None
    image: str | None = None
    work_dir: Path  # private scratch folder of this run on the host
    artifacts_dir: Path  # host folder the artifacts end up in
    limits: Limits = msgspec.field(default_factory=Limits)


class ExitStatus(msgspec.Struct, kw_only=True):
    code: int | None
    oom_killed: bool = False
    signal: int | None = None


class RunHandle(Protocol):
    def output(self) -> AsyncIterator[tuple[str, bytes]]:
        """Lines (without newline) from ``"proto"`` and ``"stderr"``, until both streams close."""
        ...

    async def wait(self) -> ExitStatus: ...

    async def kill(self, grace_s: float) -> None:
        """SIGTERM, wait ``grace_s``, then SIGKILL; safe to call more than once."""
        ...

    async def collect_artifacts(self) -> None:
        """Make the run's artifacts available under ``spec.artifacts_dir`` (checked later)."""
        ...

    async def remove(self) -> None:
        """Remove the container or sandbox and its scratch space."""
        ...


class ExecutionBackend(Protocol):
    name: str
    isolated: bool
    #: "venv" (needs RunSpec.venv_dir) or "image" (needs RunSpec.image)
    artifact_kind: str

    async def start(self, spec: RunSpec) -> RunHandle: ...

    async def cleanup_orphans(self, runner_id: str) -> int:
        """At a runner's start: end and remove what dead runners left (containers of this runner
        id — its predecessor's —, sandboxes of runner processes that are gone); return how many
        were still running."""
        ...


def runtime_env(spec: RunSpec, *, input_file: str, artifacts_dir: str, pythonpath: str) -> dict[str, str]:
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": pythonpath,
        **spec.env,
    }
    env.update(
        {
            "CREWYARD_RUN_ID": spec.run_id,
            "CREWYARD_PROJECT": spec.project,
            "CREWYARD_DEPLOYMENT_ID": spec.deployment_id,
            "CREWYARD_ENTRYPOINT": spec.entrypoint,
            "CREWYARD_FRAMEWORK": spec.framework,
            "CREWYARD_INPUT_FILE": input_file,
            "CREWYARD_ARTIFACTS_DIR": artifacts_dir,
        }
    )
    return env
