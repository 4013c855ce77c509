"""Fork servers in bwrap sandboxes: a deployment's crew imported once, each run forked into a
sandbox of its own.

The server is a bwrap sandbox like a run's (the same file system, read-only, uid 1000, no host
network, limits from a control group of its own), with three differences:

- bwrap runs as an unprivileged user (the host uid ``CREWYARD_SANDBOX_UID``, which no account
  has — ``crewyard.sandboxuid`` says why; through util-linux's ``setpriv``) and so makes the
  sandbox in a *user namespace of its own*, where that uid is the crew's 1000 and the server
  keeps four capabilities (``SERVER_CAPS``) — enough to give each run new namespaces and
  mounts, nothing on the host. (A sandbox made by a privileged bwrap cannot: its ``/proc``
  covers are locked, and a fresh ``/proc`` for a run's pid namespace is refused.)
- An unprivileged bwrap cannot reach the deployment's folders, which lie in the runner's private
  data folder: before it runs, a private mount namespace (``unshare --mount``, as root) binds
  them into a tmpfs at :data:`STAGE`, which only that namespace sees, and bwrap binds them from
  there. The runner's data folder stays closed.
- The server has no artifacts folder: it binds its *slots* folder (beside its own, the
  runner's, which the server can pass through but not list or change), in which the runner makes
  one folder per run (owned by the sandbox's host uid) and renames it to the run's artifacts folder when the
  run ends (the same file system: both lie in the runner's work folder).

Per run (:class:`SandboxedRun`, the fork's confinement) the runner makes the slot, a control
group and the network plan; the keeper enters new mount, network, IPC, UTS and pid namespaces
and mounts the run's ``/tmp``, ``/dev/shm`` and slot (at ``/artifacts``) there; the runner puts
the keeper into the run's control group and gives its namespace the private network, as it does
a sandbox; then the run's init drops every capability and user namespaces for good and forks the
run (``crewyard_runtime/_confine.py``). A run is as isolated from the server and from every other
run as in a sandbox of its own: a fresh process, pid namespace, /proc, /tmp, artifacts folder,
network stack and control group; the same uid and read-only file system.

What the server's import could do with its capabilities (mounts and namespaces of its own, in its
own user namespace) is the crew's own business, like every import-time effect; runs never have them.
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import socket
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from crewyard import cgroups, privatenet, sandboxuid
from crewyard.environments.sandbox import system_binds
from crewyard.spawn import find_tool

from ._base import SHM_BYTES, BackendError, RunSpec
from ._bwrap_command import FORKED_ARTIFACTS, SERVER_CAPS, _under, base_prefix_of, trial
from ._forkserver import ForkServer

if TYPE_CHECKING:
    from .bwrap import BwrapBackend, BwrapHandle

#: Where a server's private mount namespace binds the deployment's folders for bwrap.
STAGE = Path("/run/crewyard/stage")

#: $1 = the stage folder; then pairs of (host folder, name in the stage) up to ``--``; then the command.
_STAGE_SCRIPT = """\
stage=$1
shift
mount -t tmpfs -o mode=0755,size=64k crewyard-stage "$stage"
while [ "$1" != "--" ]; do
  mkdir "$stage/$2"
  mount --bind "$1" "$stage/$2"
  shift 2
done
shift
exec "$@"
"""


def unprivileged(bwrap: str, host_uid: int) -> list[str]:
    """The command prefix that runs ``bwrap`` as the sandbox's user (``host_uid`` on the host),
    with no capabilities."""
    setpriv = find_tool("setpriv")
    assert setpriv is not None
    uid = str(host_uid)
    return [setpriv, "--reuid", uid, "--regid", uid, "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", "--", bwrap]  # fmt: skip


@functools.cache
def unavailable(bwrap: str, host_uid: int) -> str | None:
    """Why fork servers cannot run in bwrap sandboxes here (None: they can)."""
    if (wrong := sandboxuid.problem(host_uid)) is not None:
        return wrong
    if os.geteuid() != 0:
        return "the runner is not root (a server's folders are bound for it by root)"
    if find_tool("unshare") is None or find_tool("setpriv") is None:
        return "util-linux's unshare and setpriv are needed"
    caps = [arg for cap in SERVER_CAPS for arg in ("--cap-add", cap)]
    command = [*unprivileged(bwrap, host_uid), "--unshare-all", "--unshare-user", "--cap-drop", "ALL", *caps,
               *system_binds(), "--proc", "/proc", "--dev", "/dev", "true"]  # fmt: skip
    return trial(command, "an unprivileged bwrap")


def _staged(spec: RunSpec, files: Path, slots: Path) -> list[str]:
    assert spec.venv_dir is not None
    pairs = [(spec.venv_dir, "env"), (spec.source_dir, "source"), (spec.runtime_dir, "runtime"),
             (files, "files"), (slots, "slots")]  # fmt: skip
    prefix = base_prefix_of(spec.venv_dir)
    if not _under(prefix, "/usr"):
        pairs.append((prefix, "prefix"))
    return [arg for path, name in pairs for arg in (str(path), name)]


async def start_server(backend: BwrapBackend, spec: RunSpec) -> ForkServer | None:
    """A fork server of ``spec``'s deployment in a bwrap sandbox; None where there cannot be one."""
    if (
        spec.venv_dir is None
        or await asyncio.to_thread(unavailable, backend.bwrap, backend.host_uid) is not None
    ):
        return None  # (the trial runs once a runner: cached)
    # Beside the server's folder, which goes when the server is retired: its runs may go on.
    slots = spec.work_dir.with_name(spec.work_dir.name + "-slots")
    await asyncio.to_thread(_make_slots, spec, slots)
    here, there = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)

    def wrap(command: list[str]) -> list[str]:
        unshare = find_tool("unshare")
        assert unshare is not None
        bwrap_at = command.index(backend.bwrap)
        staged = _staged(spec, spec.work_dir / "sandbox", slots)
        staging = [unshare, "--mount", "--propagation", "private", "/bin/sh", "-ec", _STAGE_SCRIPT,
                   "crewyard-stage", str(STAGE), *staged, "--"]  # fmt: skip
        return [
            *command[:bwrap_at],
            *staging,
            *unprivileged(backend.bwrap, backend.host_uid),
            *command[bwrap_at + 1 :],
        ]

    try:
        handle = await backend._start(
            msgspec.structs.replace(spec, warm=True), stage=STAGE, fork_fd=there.fileno(), wrap=wrap
        )
    except BaseException:
        here.close()
        await asyncio.to_thread(shutil.rmtree, slots, True)
        raise
    finally:
        there.close()
    handle.leftovers.append(slots)  # removed with the server, after its last run
    return ForkServer(handle, here, functools.partial(SandboxedRun.make, backend, handle, slots))


def _make_slots(spec: RunSpec, slots: Path) -> None:
    """The server's slots folder: the runner's (the server can neither list it nor put, swap or
    remove anything in it), each slot in it the sandbox user's."""
    STAGE.mkdir(parents=True, exist_ok=True)
    # The sandbox's user reads the crew's folder itself (sources unpacked before it was made
    # readable were 0700; the cache around it keeps everyone else out).
    mode = spec.source_dir.stat().st_mode
    if mode & 0o055 != 0o055:
        spec.source_dir.chmod((mode & 0o7777) | 0o055)
    slots.mkdir(parents=True, exist_ok=True)
    slots.chmod(0o711)


class SandboxedRun:
    """A forked run's own slot, control group and network (``_forkserver.Confinement``)."""

    def __init__(self, spec: RunSpec, slot: Path, group: cgroups.Cgroup | None, tmp_size: int) -> None:
        self._spec, self._slot, self._group = spec, slot, group
        self._plan: privatenet.NetworkPlan | None = None
        self._network: privatenet.PrivateNetwork | None = None
        self._keeper = 0  # the run's first process, once placed
        box = {
            "slot": slot.name,
            "tmp_size": tmp_size,
            "shm_size": SHM_BYTES,
            "network": spec.limits.network != "host",
        }
        self.request: dict[str, Any] = {"artifacts_dir": FORKED_ARTIFACTS, "tmp_dir": "/tmp", "sandbox": box}

    @classmethod
    async def make(
        cls, backend: BwrapBackend, server: BwrapHandle, slots: Path, spec: RunSpec
    ) -> SandboxedRun:
        slot = slots / uuid.uuid4().hex
        await asyncio.to_thread(_make_slot, slot, backend.host_uid)
        group = await asyncio.to_thread(backend._new_group, spec)
        run = cls(spec, slot, group, backend.tmp_size)
        run._plan = server.network_plan
        return run

    async def place(self, keeper: int) -> None:
        self._keeper = keeper
        if self._group is not None:
            try:
                for procs in self._group.procs_files():
                    await asyncio.to_thread(Path(procs).write_text, str(keeper))
            except OSError as exc:
                raise BackendError(f"cannot put the run into its control group: {exc}") from exc
        if self._plan is not None:
            try:
                self._network = await privatenet.attach(keeper, self._plan)
            except privatenet.NetworkError as exc:
                raise BackendError(f"cannot give the run its network: {exc}") from exc

    async def memory_used(self) -> int | None:
        return await asyncio.to_thread(self._group.memory_used) if self._group else None

    def files_folder(self) -> Path:
        return self._slot

    async def processes(self) -> set[int] | None:
        if self._group is not None:
            return await asyncio.to_thread(self._group.pids)
        return await asyncio.to_thread(cgroups.descendants, self._keeper) if self._keeper else None

    def oom_killed(self) -> bool:
        return self._group.oom_killed() if self._group else False

    async def collect(self) -> None:
        """The slot becomes the run's artifacts folder (the runner's collector reads it as it
        reads a sandbox's, following no link)."""
        await asyncio.to_thread(_move, self._slot, self._spec.artifacts_dir)

    async def remove(self) -> None:
        if self._network is not None:
            await asyncio.to_thread(self._network.close)
            self._network = None
        if self._group is not None:
            self._group.kill_all()
            await asyncio.to_thread(self._group.remove)
        await asyncio.to_thread(shutil.rmtree, self._slot, True)


def _make_slot(slot: Path, host_uid: int) -> None:
    slot.mkdir(mode=0o700)
    os.chown(slot, host_uid, host_uid)


def _move(slot: Path, artifacts: Path) -> None:
    """One rename, which follows no link: the folder the runner made, with what the run wrote
    (never a copy, which would read through whatever the sandbox's user put there meanwhile)."""
    try:
        artifacts.rmdir()  # empty: made for the run, which wrote into its slot
        os.rename(slot, artifacts)
    except OSError as exc:
        raise BackendError(f"cannot move the run's artifacts folder into place: {exc}") from exc
