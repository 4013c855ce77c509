"""The ``venv`` build backend: a virtual environment per dependency set, built in a sandbox.

The environment is made inside the build sandbox (:mod:`.sandbox`) at ``/opt/crewyard/env``,
the path every run sees it at; what goes in is decided by :mod:`.inputs`; the crew's ``python``
picks the interpreter (:mod:`.pythons`). Everything installed is compiled to bytecode at build
time (unchecked hash-based ``.pyc``: runs, which cannot write, never compile again). The result
is published to the object store (:mod:`.store`) under its digest, so an unchanged crew is never
rebuilt — on any builder — and every runner runs exactly what was built. Environments are
shared by digest between projects, so the build folder holds only what the digest covers
(:func:`.inputs.build_files`, :func:`.npm.build_files`) and nothing runs from it that the
recipe did not name (``compileall`` runs isolated, from ``/``).

A JavaScript crew (``langgraph-js``) gets the same treatment with npm instead of uv (:mod:`.npm`):
``node_modules`` made in the same sandbox at the same path, published and reused the same way.
"""

from __future__ import annotations

import asyncio
import shlex
import uuid
from collections.abc import Callable
from pathlib import Path

from crewyard import privatenet
from crewyard.core.entrypoints import runtime_of
from crewyard.keyedlock import KeyedLock
from crewyard.objects import ObjectStore

from . import archive as env_archive
from . import inputs as crew_inputs
from . import nodejs, npm, pythons, registry, sandbox, usage
from ._base import BuildRequest, BuildResult, LogSink
from .store import EnvironmentStore

_LOCKED = "/tmp/crewyard-locked.txt"


def build_script(
    found: crew_inputs.Inputs,
    python: str,
    reg: registry.Registry,
    pyproject_deps: list[str],
    env_path: str = sandbox.ENV_PATH,
) -> str:
    """The shell script a build sandbox (or build container) runs, from the crew's copied folder.

    The same recipe for every backend: a venv at ``env_path`` from ``python``; the locked
    versions when there is a uv.lock; the requirement file as written and/or the crew's package;
    then every installed module compiled to bytecode. The build folder (the working directory)
    must hold only what the digest covers (:func:`.inputs.build_files`).
    """
    env_python = f"{env_path}/bin/python"
    install = ["uv", "pip", "install", "--python", env_python, *reg.uv_args]
    lines = [
        "set -eu",
        shlex.join(["uv", "venv", "--quiet", "--no-config", "--python", python, env_path]),
    ]
    if found.uv_lock:
        export = ["uv", "export", "--frozen", "--quiet", "--no-emit-project", "--no-dev",
                  "--format", "requirements-txt", "--output-file", _LOCKED]  # fmt: skip
        lines.append(shlex.join(export))
        lines.append(shlex.join([*install, "-r", _LOCKED]))
    what = [arg for rel in found.requirement_files[:1] for arg in ("-r", rel)]
    if found.project:
        what.append(".")
    elif not found.requirement_files:
        what += pyproject_deps
    if what:
        lines.append(shlex.join([*install, *what]))
    # Some packages ship files that are not Python (templates named *.py): not compiling those
    # is what pip and uv do too, so their failures are not the build's. Isolated (-I: no working
    # directory on sys.path, no PYTHON* variables; -S: no .pth files run), from /: the stdlib's
    # compileall, never a module of that name in the crew's folder.
    compile_all = [env_python, "-I", "-S", "-m", "compileall", "-qq", "-j", "0", "--invalidation-mode",
                   "unchecked-hash", f"{env_path}/lib"]  # fmt: skip
    lines.append(f"(cd / && {shlex.join(compile_all)}) || :")
    return "\n".join(lines) + "\n"


class VenvBuilder:
    name = "venv"

    def __init__(
        self,
        cache_dir: Path,
        objects: ObjectStore | None = None,
        limits: sandbox.BuildLimits | None = None,
        network: privatenet.NetworkPolicy | None = None,
    ) -> None:
        self.limits = limits or sandbox.BuildLimits()
        self.store = EnvironmentStore(cache_dir, objects, self.limits)
        self.scratch = cache_dir / "build"
        #: Private networks builds may reach besides the registries' own (the operator's setting).
        self.network = network or privatenet.NetworkPolicy()
        self._locks = KeyedLock()

    async def sweep(self) -> int:
        """Nothing of a dead builder runs on: its build sandboxes die with it (bwrap's
        ``--die-with-parent``), and its scratch folders are its own machine's."""
        return 0

    def path_for(self, digest: str, sha256: str) -> Path:
        return self.store.path_for(digest, sha256)

    async def build(self, request: BuildRequest, log: LogSink) -> BuildResult:
        if runtime_of(request.config.framework) == "node":
            return await self._build_node(request, log)
        interp = await asyncio.to_thread(pythons.select, request.config.python)
        found = await asyncio.to_thread(crew_inputs.read, request.source_dir)
        reg = registry.from_host()
        parts = [f"python:{interp.path}:{interp.version}", *reg.digest_parts()]
        digest = await asyncio.to_thread(
            crew_inputs.digest, request.source_dir, found, source_digest=request.source_digest, parts=parts
        )
        deps = await asyncio.to_thread(crew_inputs.dependencies_of, request.source_dir)
        script = build_script(found, interp.path, reg, deps)
        files = await asyncio.to_thread(crew_inputs.build_files, request.source_dir, found)
        return await self._make(
            request, digest, script, reg, log, files,
            what=f"with Python {interp.version}", prefixes=[interp.prefix], interpreter=interp.path,
            notes=found.notes,
        )  # fmt: skip

    async def _build_node(self, request: BuildRequest, log: LogSink) -> BuildResult:
        """A JavaScript crew's dependencies, installed with npm in the same sandbox (:mod:`.npm`)."""
        node = await asyncio.to_thread(nodejs.select)
        found = await asyncio.to_thread(npm.read, request.source_dir)
        reg = registry.from_host()
        parts = [f"node:{node.major}", *reg.npm_digest_parts()]
        digest = await asyncio.to_thread(npm.digest, request.source_dir, found, parts=parts)
        assert node.npm is not None  # select() checked
        script = npm.build_script(found, sandbox.ENV_PATH, [node.path, node.npm])
        files = await asyncio.to_thread(npm.build_files, request.source_dir, found)
        return await self._make(
            request, digest, script, reg, log, files,
            what=f"with Node {node.version}", prefixes=[node.prefix], interpreter=f"node {node.version}",
            notes=found.notes, prepare=npm.copy_runtime_package,
        )  # fmt: skip

    async def _make(
        self,
        request: BuildRequest,
        digest: str,
        script: str,
        reg: registry.Registry,
        log: LogSink,
        files: list[str] | None,
        *,
        what: str,
        prefixes: list[str],
        interpreter: str,
        notes: list[str],
        prepare: Callable[[Path], None] | None = None,
    ) -> BuildResult:
        """The environment named ``digest``: reused when built before, else made by ``script`` from
        ``files`` of the crew's folder (None: all of it; see :func:`.inputs.build_files`)."""
        async with self._locks.hold(digest):
            done = await self.store.published(digest)
            if done is not None:
                await log(f"environment {digest[:12]} already built: reusing it", "stdout")
                return BuildResult(
                    backend=self.name, env_digest=digest, env_sha256=done.sha256, cached=True,
                    venv_dir=self.path_for(digest, done.sha256),
                )  # fmt: skip
            for note in notes:
                await log(note, "stdout")
            await log(f"building environment {digest[:12]} {what} in a sandbox", "stdout")
            scratch = self.scratch / f"{digest}.{uuid.uuid4().hex[:8]}"
            try:
                await asyncio.to_thread(
                    crew_inputs.copy_build_folder, request.source_dir, scratch / "src", files
                )
                if prepare is not None:
                    await asyncio.to_thread(prepare, scratch / "env")
                await sandbox.run(scratch, script, prefixes, reg, self.limits, log, self.network)
                # The sandbox cannot replace its env folder (a mount point of its own), and this
                # says so again, in depth, before the host touches what it left.
                await asyncio.to_thread(env_archive.real_folder, scratch / "env")
                manifest = await self.store.publish(digest, scratch / "env", interpreter)
            finally:
                await asyncio.to_thread(usage.remove, scratch)  # however deep the build nested folders
        await log(f"environment {digest[:12]} ready ({manifest.size >> 20} MiB)", "stdout")
        return BuildResult(
            backend=self.name, env_digest=digest, env_sha256=manifest.sha256, cached=False,
            venv_dir=self.path_for(digest, manifest.sha256),
        )  # fmt: skip
