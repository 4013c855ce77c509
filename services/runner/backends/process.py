"""The ``process`` backend: a plain subprocess. For development only — NOT isolated.

The crew runs with the deployment's virtual environment, in its own session (so the whole
process group is signalled on cancel), with rlimits for address space and file size. A
JavaScript crew runs on the machine's Node from a copy of its folder in the run's work folder,
next to a ``node_modules`` link to the environment's (Node finds packages in the folders above a
module; a copy, because Node resolves a linked folder to where it really is). It can see
the host's files and network like any program of the runner's user. It is used only when the
operator chooses it (``--backend process``), never as a fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec

from crewyard import cgroups, spawn
from crewyard.core.entrypoints import runtime_of
from crewyard.environments import nodejs
from crewyard.lines import merge_lines

from ._artifacts import Skipped
from ._base import (
    FORK_FD,
    RUN_NOFILE,
    BackendError,
    ExitStatus,
    NoLinger,
    RunSpec,
    opening,
    runtime_command,
    runtime_env,
)
from ._forkserver import ForkServer
from ._stdin import StdinWriter


def _node_layout(spec: RunSpec) -> Path:
    """``work/app`` (a copy of the crew's folder) beside ``work/node_modules`` (the environment's)."""
    assert spec.venv_dir is not None
    app = spec.work_dir / "app"
    shutil.rmtree(app, ignore_errors=True)
    shutil.copytree(spec.source_dir, app, symlinks=True)
    link = spec.work_dir / "node_modules"
    link.unlink(missing_ok=True)
    link.symlink_to(spec.venv_dir / "node_modules", target_is_directory=True)
    return app


def _resident(pid: int) -> int | None:
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])  # /proc: never blocks
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


class ProcessHandle(NoLinger):
    def __init__(self, proc: asyncio.subprocess.Process, spec: RunSpec) -> None:
        self._proc = proc
        self._spec = spec
        self._stdin = StdinWriter(proc.stdin)
        #: Nothing is left out on the way: the runner checks the folder itself when it collects.
        self.skipped: Skipped = []

    async def send(self, line: bytes) -> None:
        await self._stdin.send(line)

    def output(self) -> AsyncIterator[tuple[str, bytes]]:
        assert self._proc.stdout and self._proc.stderr
        return merge_lines(
            {"proto": self._proc.stdout, "stderr": self._proc.stderr}, self._spec.limits.max_output_bytes
        )

    async def wait(self) -> ExitStatus:
        code = await self._proc.wait()
        sig = -code if code < 0 else None
        return ExitStatus(code=code, signal=sig)

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)

    async def kill(self, grace_s: float) -> None:
        if self._proc.returncode is not None:
            self._signal(signal.SIGKILL)  # stragglers of the group
            return
        self._signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._proc.wait(), grace_s)
        self._signal(signal.SIGKILL)
        await self._proc.wait()

    async def memory_used(self) -> int | None:
        """The crew's resident memory (its process, not the children it started)."""
        return _resident(self._proc.pid)

    async def files_folder(self) -> Path | None:
        return self._spec.artifacts_dir

    async def processes(self) -> set[int] | None:
        """The crew and the processes it started (no control group: one that left the tree is
        not among them)."""
        return await asyncio.to_thread(cgroups.descendants, self._proc.pid)

    async def collect_artifacts(self) -> Path:
        """The crew wrote straight into ``spec.artifacts_dir``: nothing to copy."""
        return self._spec.artifacts_dir

    async def remove(self) -> None:
        self._stdin.close()
        self._signal(signal.SIGKILL)


class ProcessBackend:
    name = "process"
    isolated = False
    artifact_kind = "venv"

    async def start(self, spec: RunSpec) -> ProcessHandle:
        return await self._start(spec)

    async def start_server(self, spec: RunSpec) -> ForkServer | None:
        """A fork server of ``spec``'s deployment (``_forkserver``); None for a JavaScript crew."""
        if runtime_of(spec.framework) != "python":
            return None
        here, there = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            handle = await self._start(msgspec.structs.replace(spec, warm=True), fork_fd=there.fileno())
        except BaseException:
            here.close()
            raise
        finally:
            there.close()
        return ForkServer(handle, here)

    async def _start(self, spec: RunSpec, fork_fd: int | None = None) -> ProcessHandle:
        if spec.venv_dir is None:
            raise BackendError("process backend needs the deployment's virtual environment")
        spec.work_dir.mkdir(parents=True, exist_ok=True)
        spec.artifacts_dir.mkdir(parents=True, exist_ok=True)
        env = runtime_env(
            spec,
            artifacts_dir=str(spec.artifacts_dir),
            pythonpath=f"{spec.runtime_dir}{os.pathsep}{spec.source_dir}",
        )
        env["PATH"] = f"{spec.venv_dir / 'bin'}{os.pathsep}{env['PATH']}"
        env["TMPDIR"] = str(spec.work_dir)
        if fork_fd is not None:
            env[FORK_FD] = str(fork_fd)
        source_dir = spec.source_dir
        node = ""
        if runtime_of(spec.framework) == "node":
            found = await asyncio.to_thread(nodejs.installed)
            if found is None:
                raise BackendError("this runner's machine has no Node.js to run a langgraph-js crew")
            node = found.path
            source_dir = await asyncio.to_thread(_node_layout, spec)
            env["PATH"] = f"{spec.venv_dir / 'node_modules' / '.bin'}{os.pathsep}{env['PATH']}"
        command = runtime_command(
            spec,
            python=str(spec.venv_dir / "bin" / "python"),
            node=node,
            runtime_dir=str(spec.runtime_dir),
            env_dir=str(spec.venv_dir),
            source_dir=str(source_dir),
            heap_limit=True,
        )
        limits = spec.limits
        rlimits = {"nofile": RUN_NOFILE}
        if limits.memory_bytes and not node:  # Node's heap is capped instead (runtime_command)
            rlimits["as"] = limits.memory_bytes * 4  # address space, not RSS: thread stacks and mmaps fit
        if limits.file_size_bytes:
            rlimits["fsize"] = limits.file_size_bytes
        # Killed by the kernel if the runner dies (a SIGKILLed runner leaves no orphans), checked
        # against the runner's pid after that is set; spawned without forking the runner.
        command = spawn.confined(command, parent_pid=os.getpid(), limits=rlimits, die_with_parent=True)
        try:
            proc = await asyncio.create_subprocess_exec(
                *command,
                cwd=str(spec.artifacts_dir),
                env=env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                pass_fds=() if fork_fd is None else (fork_fd,),
                limit=1 << 20,
            )
        except (OSError, spawn.SpawnError) as exc:
            raise BackendError(f"cannot start crew process: {exc}") from exc
        handle = ProcessHandle(proc, spec)
        handle._stdin.send_soon(opening(spec))
        return handle

    async def cleanup_orphans(self, runner_id: str) -> int:
        return 0  # crews die with their runner (PR_SET_PDEATHSIG, checked after it is set)
