"""Helpers of the backend tests: run specs for a backend, running them, finding their processes.

(A module of its own rather than conftest.py, so that tests can import it by a unique name.)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest

from crewyard.core.events import ArtifactStored
from crewyard.runner.artifacts import walk
from crewyard.runner.backends import (
    BwrapBackend,
    ExecutionBackend,
    ExitStatus,
    Limits,
    ProcessBackend,
    RunHandle,
    RunSpec,
)
from crewyard.runner.backends._forkserver import ForkedHandle, ForkServer
from crewyard.runner.warm import WarmSandbox
from crewyard.testing.processes import run_processes

TEST_LIMITS = Limits(memory_bytes=256 * 1024 * 1024, cpus=1.0, pids=64, file_size_bytes=64 * 1024 * 1024)


def folder_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


#: The runner id of this test session's runs: other sessions on the machine use their own.
TEST_RUNNER_ID = f"test-runner-{uuid.uuid4().hex[:8]}"


async def lingering_processes(run_id: str, settle_s: float = 3.0) -> list[int]:
    """Processes of the run left after it ended, allowing a moment for the dying to be reaped."""
    for _ in range(int(settle_s / 0.05)):
        if not (left := run_processes(run_id)):
            return left
        await asyncio.sleep(0.05)
    return run_processes(run_id)


@dataclass
class Outcome:
    status: ExitStatus
    proto: list[dict[str, Any]]
    stderr: list[str]
    handle: RunHandle
    #: What the runner's collector would store, and what it (or the backend) left out and why.
    artifacts: dict[str, bytes] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    #: Where they were read (``collect_artifacts()``'s answer).
    folder: Path | None = None
    #: Processes of the run still alive once it had exited (before remove(), which kills anyway).
    lingering: list[int] = field(default_factory=list)

    @property
    def result(self) -> Any:
        return next(m["output"] for m in self.proto if m["t"] == "result")

    @property
    def error(self) -> dict[str, Any] | None:
        return next((m for m in self.proto if m["t"] == "error"), None)


#: What a test looks at while a run runs (``Runs.execute``).
Look = Callable[[RunHandle], Awaitable[None]]


class Runs:
    """Run specs for one backend, and running them to the end (or until killed)."""

    def __init__(self, backend: ExecutionBackend, tmp: Path, source: Path, runtime: Path,
                 venv: Path | None, image: str | None) -> None:  # fmt: skip
        self.backend = backend
        self.kind = backend.name
        self._tmp, self._source, self._runtime, self._venv, self._image = tmp, source, runtime, venv, image

    def spec(self, entrypoint: str, *, input: dict[str, Any] | None = None, env: dict[str, str] | None = None,
             limits: Limits | None = None, runner_id: str = TEST_RUNNER_ID) -> RunSpec:  # fmt: skip
        run_id = f"run_{uuid.uuid4().hex[:12]}"
        work = self._tmp / run_id
        return RunSpec(
            run_id=run_id,
            project="tests",
            deployment_id="dep_backends",
            runner_id=runner_id,
            framework="python",
            entrypoint=entrypoint,
            input=input or {},
            env=env or {},
            source_dir=self._source,
            runtime_dir=self._runtime,
            venv_dir=self._venv,
            image=self._image,
            work_dir=work,
            artifacts_dir=work / "artifacts",
            limits=limits or TEST_LIMITS,
        )

    async def execute(self, spec: RunSpec, *, kill_when: str | None = None, grace_s: float = 5.0,
                      kill_after_s: float | None = None,
                      while_running: Look | None = None) -> Outcome:  # fmt: skip
        """Run to the end; with ``kill_when``, kill once a proto log line contains that text
        (after ``while_running`` looked at the handle)."""
        handle = await self.backend.start(spec)
        proto: list[dict[str, Any]] = []
        stderr: list[str] = []
        seen = asyncio.Event()

        async def pump() -> None:
            async for stream, line in handle.output():
                if stream == "proto":
                    message = json.loads(line)
                    proto.append(message)
                    if message["t"] in ("result", "error"):
                        await handle.end_input()  # as the runner does: a lingering runtime ends
                    if kill_when and kill_when in str(message.get("message", "")):
                        seen.set()
                else:
                    stderr.append(line.decode(errors="replace"))

        reader = asyncio.create_task(pump())
        status: ExitStatus | None = None
        try:
            if kill_when:
                await asyncio.wait_for(seen.wait(), 30)
                if while_running is not None:
                    await while_running(handle)
                await handle.kill(grace_s)
            elif kill_after_s is not None:
                await asyncio.sleep(kill_after_s)
                await handle.kill(grace_s)
            status = await asyncio.wait_for(handle.wait(), 60)
            await asyncio.wait_for(reader, 30)
            lingering = await lingering_processes(spec.run_id)
            # What the runner would store, read as its collector reads it (following no link),
            # before the removal: a local engine's volume is read where it is.
            files: dict[str, bytes] = {}

            def take(name: str, fd: int, st: os.stat_result) -> ArtifactStored:
                files[name] = os.pread(fd, st.st_size, 0)
                return ArtifactStored(name=name, size=st.st_size, content_type="", sha256="0" * 64)

            folder = await handle.collect_artifacts()
            collected = await asyncio.to_thread(walk, folder, take, max_file=1 << 24, max_total=1 << 26)
        finally:
            reader.cancel()
            if status is None:  # the test failed midway: do not leave the run behind
                with contextlib.suppress(Exception):
                    await handle.kill(0)
            await handle.remove()
        return Outcome(
            status=status,
            proto=proto,
            stderr=stderr,
            handle=handle,
            artifacts=files,
            skipped=[f"{n}: {r}" for n, r in handle.skipped] + collected.skipped,
            folder=folder,
            lingering=lingering,
        )


class ForkedRun:
    """A run forked from a fork server started for it; removing it removes the server too."""

    def __init__(self, handle: RunHandle, server: WarmSandbox) -> None:
        self._handle, self.server = handle, server
        self.output, self.wait, self.send, self.kill = handle.output, handle.wait, handle.send, handle.kill
        self.end_input = handle.end_input
        self.collect_artifacts, self.memory_used = handle.collect_artifacts, handle.memory_used
        self.files_folder, self.processes = handle.files_folder, handle.processes

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return self._handle.skipped

    async def pids(self, timeout: float = 30) -> list[int]:
        """The run's keeper and process, once known: forked, they carry the server's environment
        block (the run id is set inside the interpreter), so ``run_processes`` cannot find them."""
        assert isinstance(self._handle, ForkedHandle)
        deadline = asyncio.get_running_loop().time() + timeout
        while self._handle.pid is None:
            assert asyncio.get_running_loop().time() < deadline, "the keeper never said which process runs"
            await asyncio.sleep(0.05)
        return [self._handle.keeper, self._handle.pid]

    async def remove(self) -> None:
        await self._handle.remove()
        await self.server.remove()


class ForkingProcessBackend(ProcessBackend):
    """The process backend with every run forked from a fork server (``_forkserver``), as the
    runner's pools fork them: the contract seen through a fork."""

    async def start(self, spec: RunSpec) -> ForkedRun:  # type: ignore[override]
        server = await start_server(self, spec)
        return ForkedRun(await _fork_server(server).fork(spec), server)


class ForkingBwrapBackend(BwrapBackend):
    """The bwrap backend with every run forked into a sandbox of its own from a sandboxed fork
    server (``_bwrap_server``), as the runner's pools fork them."""

    async def start(self, spec: RunSpec) -> ForkedRun:  # type: ignore[override]
        server = await start_server(self, spec)
        return ForkedRun(await _fork_server(server).fork(spec), server)


async def start_server(
    backend: ProcessBackend | BwrapBackend, spec: RunSpec, *, ready: bool = True
) -> WarmSandbox:
    """A fork server prepared as ``spec``'s run would be (in a folder of its own), once ready."""
    work = spec.work_dir.with_name(spec.work_dir.name + "-server")
    server_spec = msgspec.structs.replace(spec, run_id=f"server_{uuid.uuid4().hex[:8]}", input={},
                                          work_dir=work, artifacts_dir=work / "artifacts")  # fmt: skip
    handle = await backend.start_server(server_spec)
    assert handle is not None
    server = WarmSandbox(server_spec, handle, "")
    if not await server.until_ready(60) and ready:
        await server.remove()
        raise AssertionError(f"the fork server did not get ready: {server.failure}")
    return server


def _fork_server(server: WarmSandbox) -> ForkServer:
    assert isinstance(server.handle, ForkServer)
    return server.handle


def make_runs(request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> Runs:
    source, _ = request.getfixturevalue("crew_source")
    runtime = request.getfixturevalue("runtime_dir")
    if kind in ("docker", "docker-archive"):
        backend: ExecutionBackend = request.getfixturevalue(kind.replace("-", "_") + "_backend")
        return Runs(backend, tmp_path, source, runtime, None, request.getfixturevalue("crew_image"))
    venv = request.getfixturevalue("crew_venv")
    backend = {"process": ProcessBackend, "forked": ForkingProcessBackend, "bwrap": BwrapBackend,
               "bwrap-forked": ForkingBwrapBackend}[kind]()  # fmt: skip
    return Runs(backend, tmp_path, source, runtime, venv, None)
