"""The execution backend interface, shared by docker, bwrap and process.

A backend starts one run and returns a :class:`RunHandle` early; the runner then reads output
lines as they come, waits for the exit, kills with a grace period when asked, has the backend
make the run's artifacts available on the host, and removes what the run left behind.

Inside every backend the same runtime runs the crew — ``python -m crewyard_runtime``, or for a
JavaScript crew the Node runtime (``crewyard_runtime/node``), both speaking one protocol; which
one, and how it is started, is :func:`runtime_command`. Its process starts with a fixed
environment (:func:`runtime_env`: ``PATH``, ``HOME``, the runtime's ``PYTHONPATH``,
``CREWYARD_RUN_ID``, ``CREWYARD_ARTIFACTS_DIR`` — a writable, initially empty folder,
``/app/artifacts`` in a container, which is also the working directory). Nothing the crew controls
is in it: the crew's environment variables, entrypoint and input travel over the runtime's stdin
in the protocol's ``prepare`` and ``start`` messages (:func:`opening`), which the backend writes
once the sandbox — and its network — is ready. So no process on the host (bwrap, the container
engine's command line or stored configuration) ever holds them. Output: the runtime's protocol
lines on stdout (stream ``"proto"``), everything else on stderr
(stream ``"stderr"``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import msgspec

from crewyard.core.entrypoints import runtime_of
from crewyard.errors import CrewyardError

from ..protocol import Prepare, Start, ThreadStart, encode

ARTIFACTS_IN_CONTAINER = "/app/artifacts"
#: Files a run's process may hold open (RLIMIT_NOFILE, soft and hard), on every backend: the
#: runner's own limits (a hard limit of a million, a container engine's default) let a crew pin
#: kernel memory with descriptors, and the disk watch reads every one of them.
RUN_NOFILE = 4096
#: The size of a run's ``/dev/shm`` (a tmpfs: memory), as a container engine's default: bwrap's
#: had none, so a crew could fill memory with it where no memory cgroup bounds the run.
SHM_BYTES = 64 * 1024 * 1024
#: The variable naming a fork server's socket (``_forkserver``; the runtime's ``forkserver.ENV_FD``).
FORK_FD = "CREWYARD_FORK_FD"
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
    network: str = "default"  # default (private) | none | host (an operator's setting only)
    #: The largest output (``result`` message) a run may report; longer protocol lines are dropped
    #: and reported as ``_lines.OVERFLOW``.
    max_output_bytes: int = 4 * 1024 * 1024


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
    #: A warm sandbox, started before any run takes it: only ``prepare`` is sent at start (the
    #: runtime imports the crew and says ``ready``); ``start`` comes from the run that takes it.
    #: ``run_id`` then names the sandbox, and ``input`` is empty.
    warm: bool = False
    #: A thread run's thread (``start.thread``).
    thread: ThreadStart | None = None


class ExitStatus(msgspec.Struct, kw_only=True):
    code: int | None
    oom_killed: bool = False
    signal: int | None = None


class NoLinger:
    """``end_input`` of a handle whose runtime was not asked to linger: nothing to do (a write
    to a pipe whose reader has exited is only an error for the writer)."""

    async def end_input(self) -> None:
        return None


class RunHandle(Protocol):
    def output(self) -> AsyncIterator[tuple[str, bytes]]:
        """Lines (without newline) from ``"proto"`` and ``"stderr"``, until both streams close;
        a protocol line over ``limits.max_output_bytes`` comes as ``("proto-overflow", length)``."""
        ...

    async def wait(self) -> ExitStatus: ...

    async def send(self, line: bytes) -> None:
        """Write one protocol line to the runtime's stdin (nothing happens once it has exited)."""
        ...

    async def end_input(self) -> None:
        """The runtime's last line is read: end its input (nothing more is sent), which ends a
        runtime that was asked to linger (``opening``); a no-op for handles that do not ask."""
        ...

    async def kill(self, grace_s: float) -> None:
        """SIGTERM, wait ``grace_s``, then SIGKILL; safe to call more than once."""
        ...

    async def collect_artifacts(self) -> Path:
        """Make the run's artifacts available on this host and return their folder (usually
        ``spec.artifacts_dir``), which the runner's collector then reads as untrusted; what was
        left out on the way, with the reason, is in ``skipped``."""
        ...

    @property
    def skipped(self) -> list[tuple[str, str]]: ...

    async def remove(self) -> None:
        """Remove the container or sandbox and its scratch space."""
        ...

    async def memory_used(self) -> int | None:
        """Memory the run holds now (its control group's, less file cache it could drop), or None
        when this backend cannot tell."""
        ...

    async def files_folder(self) -> Path | None:
        """The folder of this host the run writes its files into while it runs (the runner
        watches the disk they take), or None where this host cannot see it (a remote engine)."""
        ...

    async def processes(self) -> set[int] | None:
        """The run's processes as this host numbers them (its control group's, a container's),
        whose open files the runner's disk watch looks at; None where this host cannot tell."""
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


def runtime_env(spec: RunSpec, *, artifacts_dir: str, pythonpath: str) -> dict[str, str]:
    """The runtime process's environment: fixed, whatever the crew asks for (see the module doc)."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": pythonpath,
        "CREWYARD_RUN_ID": spec.run_id,
        "CREWYARD_ARTIFACTS_DIR": artifacts_dir,
    }


#: The Node runtime's protocol channels: stdout moves to fd 3 and stdin to fd 4, and the process's
#: own 1 and 0 become stderr and /dev/null — so raw writes by the crew, or by programs it starts,
#: can never break a protocol line (the Python runtime does the same with os.dup2 itself).
NODE_CHANNELS = 'exec "$0" "$@" 3>&1 4<&0 1>&2 </dev/null'


def runtime_command(
    spec: RunSpec,
    *,
    python: str,
    node: str,
    runtime_dir: str,
    env_dir: str,
    source_dir: str,
    heap_limit: bool = False,
) -> list[str]:
    """The command that starts the crew's runtime, as seen inside the sandbox or container.

    ``python``/``node``: the interpreter; ``runtime_dir``: the folder holding ``crewyard_runtime``;
    ``env_dir``: the deployment's environment; ``source_dir``: the crew's folder, whose parent
    holds a ``node_modules`` (the environment's) for a JavaScript crew, so that its imports
    resolve as they do for its author. ``heap_limit``: where no control group limits memory, Node's
    heap is capped at the memory limit instead (an address-space limit, the fallback for Python,
    breaks Node: V8 reserves far more address space than it uses, for WebAssembly above all).
    """
    if runtime_of(spec.framework) == "node":
        main = f"{runtime_dir}/crewyard_runtime/node/main.mjs"
        options = []
        if heap_limit and spec.limits.memory_bytes:
            options.append(f"--max-old-space-size={max(spec.limits.memory_bytes >> 20, 64)}")
        return ["/bin/sh", "-c", NODE_CHANNELS, node, *options, main, env_dir, source_dir]
    return [python, "-m", "crewyard_runtime"]


def opening(spec: RunSpec, *, linger: bool = False) -> bytes:
    """The protocol's ``prepare`` and ``start`` lines of a cold start (sent together); a warm
    sandbox's ``prepare`` alone. ``linger``: the handle's ``end_input`` ends the runtime's input
    once its last line is read, and the runtime waits for that before it exits."""
    prepare = Prepare(
        env=dict(spec.env),
        entrypoint=spec.entrypoint,
        framework=spec.framework,
        project=spec.project,
        deployment_id=spec.deployment_id,
        linger=linger,
    )
    if spec.warm:
        return encode(prepare)
    return encode(prepare) + encode(Start(run_id=spec.run_id, input=spec.input, thread=spec.thread))
