"""The ``bwrap`` backend: a bubblewrap sandbox per run, for one machine without a container engine.

What a run sees: the system's ``/usr`` (and the merged-usr links), a handful of ``/etc`` files,
its own ``/etc/passwd``, the base interpreter's prefix, the deployment's virtual environment
(at ``/opt/crewyard/env``, where the build sandbox made it), source and the runtime — all
read-only — a private ``/tmp`` and ``/dev/shm``, a fresh ``/proc``, and one writable folder:
its artifacts folder (bound at the same path as on the host, and the working directory). It
runs as uid/gid 1000 with no capabilities in new user, pid, ipc, uts, cgroup and net namespaces
(with bubblewrap 0.8+ it may not make user namespaces of its own), in a new session, and dies
with the runner: ``--die-with-parent`` once bwrap runs, and the runner's reaper (``crewyard.reaper``),
which kills the sandbox's control group when the runner dies, for the moments in which bwrap
starts.

Network: ``none`` leaves the sandbox's namespace empty (loopback only); ``default`` gives it a
private network (:mod:`crewyard.privatenet`: a user-mode stack, outbound only, the host, its
networks, link-local and private ranges unreachable), set up between the sandbox's creation and
the protocol's ``prepare``, which is what lets the crew's code run; ``host`` (which the runner
allows only when the operator does) shares the host's.

Limits: memory, pids and CPU share through a control group per sandbox (see ``crewyard.cgroups`` for why
rlimits cannot do this here); file size, core dumps and, optionally, CPU seconds through rlimits.
Where no cgroup can be made, memory falls back to an address-space rlimit.

Two deliberate departures from the obvious bwrap invocation:
- ``bwrap`` runs with the fixed :func:`runtime_env` as its own environment, and the crew's
  variables reach the runtime inside through ``prepare`` on its stdin: neither the command line
  (readable by every local user in ``ps``) nor bwrap's environment (``LD_PRELOAD`` would make the
  host's bwrap load a crew's library) ever holds them.
- Cancel signals the crew itself, not bwrap: SIGTERM to bwrap's process group kills bwrap at
  once and the sandbox with it, giving the crew no grace. The crew's host pid comes from
  ``--json-status-fd``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from crewyard import cgroups, privatenet, sandboxuid, spawn
from crewyard.core.entrypoints import runtime_of
from crewyard.environments import ENV_PATH, nodejs
from crewyard.environments.sandbox import system_binds
from crewyard.lines import merge_lines
from crewyard.reaper import Reaper

from ._artifacts import DEFAULT_MAX_FILE, DEFAULT_MAX_TOTAL, Skipped
from ._base import (
    FORK_FD,
    RUN_NOFILE,
    BackendError,
    BackendUnavailable,
    ExitStatus,
    NoLinger,
    RunSpec,
    opening,
    runtime_env,
)
from ._bwrap_command import (
    GROUP,
    PASSWD,
    SANDBOX_UID,
    known_prefixes,
    no_nested_userns,
    sandbox_command,
    trial,
)
from ._bwrap_server import start_server
from ._forkserver import ForkServer
from ._stdin import StdinWriter

STATUS_TIMEOUT_S = 30.0


class BwrapHandle(NoLinger):
    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        status: asyncio.StreamReader,
        cgroup: cgroups.Cgroup | None,
        spec: RunSpec,
        caps: tuple[int, int],
    ) -> None:
        self._proc = proc
        self._status = status
        self._cgroup = cgroup
        self._spec = spec
        self._caps = caps
        self._child_pid: int | None = None
        self._stdin = StdinWriter(proc.stdin)
        self._network: privatenet.PrivateNetwork | None = None
        #: The plan its network was made from (a fork server's runs are given the same).
        self.network_plan: privatenet.NetworkPlan | None = None
        #: Folders removed with the sandbox, besides its own files (a fork server's slots).
        self.leftovers: list[Path] = []
        #: Artifacts that were not collected, with the reason (symlinks, too large …).
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
        oom = self._cgroup.oom_killed() if self._cgroup else False
        if code < 0:  # bwrap itself was killed (by kill() or with the runner)
            return ExitStatus(code=code, signal=-code, oom_killed=oom)
        # bwrap reports a crew killed by signal N as exit code 128+N, like a shell.
        sig = code - 128 if code > 128 else None
        return ExitStatus(code=code, signal=sig, oom_killed=oom)

    async def _sandbox_init_pid(self, timeout: float = 1.0) -> int | None:
        """Host pid of the sandbox's pid 1 (bwrap's init), from the first status document."""
        if self._child_pid is None:
            with contextlib.suppress(asyncio.TimeoutError, ValueError, KeyError, json.JSONDecodeError):
                line = await asyncio.wait_for(self._status.readline(), timeout)
                self._child_pid = int(json.loads(line)["child-pid"])
        return self._child_pid

    async def connect(self, network: privatenet.NetworkPlan) -> None:
        """Give the sandbox its private network (before the crew's code may run)."""
        pid = await self._sandbox_init_pid(STATUS_TIMEOUT_S)
        if pid is None:
            raise BackendError("the sandbox did not start (bwrap reported no process)")
        try:
            self._network = await privatenet.attach(pid, network)
            self.network_plan = network
        except privatenet.NetworkError as exc:
            raise BackendError(f"cannot give the sandbox its network: {exc}") from exc

    def _crew_pids(self, init_pid: int) -> list[int]:
        # Orphans are re-parented to the sandbox's init, so its children are every process tree.
        with contextlib.suppress(OSError):
            return [int(p) for p in Path(f"/proc/{init_pid}/task/{init_pid}/children").read_text().split()]
        return []

    def _kill_hard(self) -> None:
        if self._proc.returncode is None:  # once reaped, the pid (and group id) may be someone else's
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)  # bwrap; its init follows (die-with-parent)
        if self._cgroup:
            self._cgroup.kill_all()

    async def kill(self, grace_s: float) -> None:
        if self._proc.returncode is not None:
            self._kill_hard()
            return
        init_pid = await self._sandbox_init_pid()
        for pid in self._crew_pids(init_pid) if init_pid else []:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
        # When the crew exits, bwrap's init exits and the kernel kills the rest of the pid namespace.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._proc.wait(), grace_s)
        self._kill_hard()
        await self._proc.wait()

    async def memory_used(self) -> int | None:
        if self._cgroup is None:
            return await asyncio.to_thread(cgroups.memory_of_process, self._proc.pid)
        return await asyncio.to_thread(self._cgroup.memory_used)

    async def files_folder(self) -> Path | None:
        return self._spec.artifacts_dir

    async def processes(self) -> set[int] | None:
        if self._cgroup is None:
            return await asyncio.to_thread(cgroups.descendants, self._proc.pid)
        return await asyncio.to_thread(self._cgroup.pids)

    async def collect_artifacts(self) -> Path:
        """The crew wrote straight into ``spec.artifacts_dir``, and the sandbox is gone: the
        runner's collector reads the folder as it is, following no link (``runner/artifacts``)."""
        return self._spec.artifacts_dir

    async def remove(self) -> None:
        self._stdin.close()
        self._kill_hard()
        if self._proc.returncode is None:
            await self._proc.wait()
        if self._network is not None:
            await asyncio.to_thread(self._network.close)
            self._network = None
        if self._cgroup:
            await asyncio.to_thread(self._cgroup.remove)
        for folder in (self._spec.work_dir / "sandbox", *self.leftovers):
            await asyncio.to_thread(shutil.rmtree, folder, True)


class BwrapBackend:
    name = "bwrap"
    isolated = True
    artifact_kind = "venv"

    def __init__(
        self,
        *,
        bwrap: str | None = None,
        artifact_max_file_bytes: int = DEFAULT_MAX_FILE,
        artifact_max_total_bytes: int = DEFAULT_MAX_TOTAL,
        tmp_size_bytes: int = 512 * 1024 * 1024,
        cpu_time_limit_s: int | None = None,
        network_policy: privatenet.NetworkPolicy | None = None,
        host_uid: int = sandboxuid.DEFAULT,
    ) -> None:
        found = bwrap or shutil.which("bwrap")
        if not found:
            raise BackendUnavailable("bwrap is not installed (Debian: apt-get install bubblewrap)")
        self.bwrap = found
        known_prefixes()  # once, here: it asks each interpreter of the machine for its prefix
        self._caps = (artifact_max_file_bytes, artifact_max_total_bytes)
        self.tmp_size = tmp_size_bytes
        self._cpu_time = cpu_time_limit_s
        self.network_policy = network_policy or privatenet.NetworkPolicy()
        #: The sandbox user's uid on the host where it is itself there (a fork server's sandbox).
        self.host_uid = host_uid

    def command(
        self,
        spec: RunSpec,
        sandbox_files: Path,
        status_fd: int,
        node: nodejs.Node | None = None,
        heap_limit: bool = False,
        stage: Path | None = None,
    ) -> list[str]:
        return sandbox_command(
            self.bwrap,
            spec,
            sandbox_files,
            status_fd,
            tmp_size=self.tmp_size,
            node=node,
            heap_limit=heap_limit,
            stage=stage,
        )

    async def start(self, spec: RunSpec) -> BwrapHandle:
        return await self._start(spec)

    async def start_server(self, spec: RunSpec) -> ForkServer | None:
        """A fork server of ``spec``'s deployment, itself sandboxed, whose runs are forked into
        sandboxes of their own (``_bwrap_server``); None for a JavaScript crew, or where this
        machine cannot (then its pools start sandboxes one by one)."""
        if runtime_of(spec.framework) != "python":
            return None
        return await start_server(self, spec)

    async def _start(
        self,
        spec: RunSpec,
        *,
        stage: Path | None = None,
        fork_fd: int | None = None,
        wrap: Callable[[list[str]], list[str]] | None = None,
    ) -> BwrapHandle:
        """A sandbox for ``spec`` (with ``stage``, ``fork_fd`` and ``wrap``: a fork server's)."""
        if spec.venv_dir is None:
            raise BackendError("bwrap backend needs the deployment's virtual environment")
        files = spec.work_dir / "sandbox"
        files.mkdir(parents=True, exist_ok=True)
        spec.artifacts_dir.mkdir(parents=True, exist_ok=True)
        (files / "passwd").write_text(PASSWD)
        (files / "group").write_text(GROUP)
        network: privatenet.NetworkPlan | None = None
        if spec.limits.network == "default":
            try:
                network = privatenet.plan(self.network_policy)
            except privatenet.NetworkError as exc:
                raise BackendError(f"cannot plan the sandbox's network: {exc}") from exc
            (files / "resolv.conf").write_text(network.resolv_conf)
        env = runtime_env(
            spec,
            artifacts_dir=str(spec.artifacts_dir),
            pythonpath=f"{spec.runtime_dir}{os.pathsep}{spec.source_dir}",
        )
        env["PATH"] = f"{ENV_PATH}/bin{os.pathsep}{env['PATH']}"
        env["TMPDIR"] = "/tmp"
        if fork_fd is not None:
            env[FORK_FD] = str(fork_fd)
        node = None
        if runtime_of(spec.framework) == "node":
            node = await asyncio.to_thread(nodejs.installed)
            if node is None:
                raise BackendError("this runner's machine has no Node.js to run a langgraph-js crew")
            env["PATH"] = f"{ENV_PATH}/node_modules/.bin{os.pathsep}{env['PATH']}"
        limits = spec.limits
        cgroup = await asyncio.to_thread(self._new_group, spec)
        procs_files = cgroup.procs_files() if cgroup else []
        cpu_time = self._cpu_time
        root = os.geteuid() == 0

        rlimits = {"core": 0, "nofile": RUN_NOFILE}  # a core dump would land in artifacts
        if limits.file_size_bytes:
            rlimits["fsize"] = limits.file_size_bytes
        if cpu_time:
            rlimits["cpu"] = cpu_time
        if limits.memory_bytes and cgroup is None and node is None:  # Node: a heap cap instead
            rlimits["as"] = limits.memory_bytes * 4  # address space, as in the process backend
        if limits.pids and cgroup is None and not root:
            rlimits["nproc"] = limits.pids  # only for a non-root runner: counts all its uid's processes

        status_r, status_w = os.pipe()
        try:
            # Joining the group before bwrap runs means bwrap and every process it ever starts
            # are inside it — no fork can slip out before we move it (crewyard.spawn: without
            # forking the runner).
            command = spawn.confined(
                self.command(spec, files, status_w, node, heap_limit=cgroup is None, stage=stage),
                cgroup_procs=procs_files,
                parent_pid=os.getpid(),
                limits=rlimits,
            )
            if wrap is not None:
                command = wrap(command)
            proc = await asyncio.create_subprocess_exec(
                *command,
                cwd="/",
                env=env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                pass_fds=(status_w,) if fork_fd is None else (status_w, fork_fd),
                limit=1 << 20,
            )
        except (OSError, spawn.SpawnError) as exc:
            os.close(status_r)
            if cgroup:
                await asyncio.to_thread(cgroup.remove)
            raise BackendError(f"cannot start bwrap sandbox: {exc}") from exc
        finally:
            os.close(status_w)
        status = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(status), os.fdopen(status_r, "rb", buffering=0)
        )
        handle = BwrapHandle(proc, status, cgroup, spec, self._caps)
        if network is not None:
            try:
                await handle.connect(network)
            except BaseException:
                await handle.remove()
                raise
        handle._stdin.send_soon(opening(spec))
        return handle

    @staticmethod
    def _new_group(spec: RunSpec) -> cgroups.Cgroup | None:
        """The run's control group, owned by this process, whose reaper is running first."""
        cgroups.sweep()  # now and then: what dead runners left, whoever they were
        limits = spec.limits
        group = cgroups.create(
            cgroups.group_name(cgroups.owner_tag(), spec.runner_id, spec.run_id),
            memory_bytes=limits.memory_bytes,
            pids=limits.pids,
            cpus=limits.cpus,
        )
        if group is not None:
            Reaper.ensure(cgroups.owner_tag())
        return group

    async def cleanup_orphans(self, runner_id: str) -> int:
        """Kill and remove the sandboxes of every runner process on this machine that is gone.

        Ownership is by process (see ``crewyard.cgroups``), not by runner id: a group of a dead process is
        removed whichever runner it ran for, a live process's never. Returns how many still held
        processes (sandboxes that had outlived their runner; expected 0 thanks to the reaper).
        """
        return await asyncio.to_thread(cgroups.sweep)


def probe(bwrap: str | None = None) -> str | None:
    """Why bwrap cannot sandbox here, or None when a trial sandbox ran."""
    found = bwrap or shutil.which("bwrap")
    if not found:
        return "bwrap is not installed (Debian: apt-get install bubblewrap)"
    cmd = [found, "--unshare-all", *no_nested_userns(found), "--uid", str(SANDBOX_UID),
           "--gid", str(SANDBOX_UID), *system_binds(), "--proc", "/proc", "--dev", "/dev",
           "true"]  # fmt: skip
    problem = trial(cmd, "bwrap")
    if problem:
        return problem
    network = privatenet.probe()
    if network:
        return f"no private network for sandboxes: {network}"
    return None
