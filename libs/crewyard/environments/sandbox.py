"""The build sandbox: a crew's dependencies are installed inside bubblewrap, never on the host.

Installing a package can run its build backend (any ``setup.py``, any PEP 517 hook), which is
the crew's code. So the whole build runs in the same kind of sandbox as a run:

- new user, pid, ipc, uts, cgroup and mount namespaces; uid/gid 1000; no capabilities; a new
  session; it dies with the builder;
- read-only: ``/usr`` and the merged-usr links, the few ``/etc`` files programs need, the
  interpreter's (Python's or Node's) prefix (same path as on the host), the ``uv`` binary, and the operator's
  registry settings (:mod:`.registry`); nothing else of the host — not the platform's data
  dir, not its environment variables;
- writable: one scratch folder bound at ``/opt/crewyard`` (``env`` — the environment, made at
  the path every run will see it; ``src`` — a copy of the crew's folder, the build folder;
  ``cache`` — uv's and npm's cache for this build only), and a size-capped private ``/tmp``;
- limits: wall-clock time, memory and process count (a control group, :mod:`crewyard.cgroups`:
  a memory hog is killed by the kernel, a fork bomb is stopped at the limit and the build
  killed), address space, file size, no core dumps; the scratch folder is watched (bytes at their
  apparent size, files and folders, depth: :mod:`.usage`) and the build is killed past the disk
  limits; each reason is the build's error message;
- network: a private one (:mod:`crewyard.privatenet`, as for runs): outbound only, never this
  machine (its loopback services — NATS, the API — included), link-local (cloud metadata) or the
  private ranges, except the private addresses of the registries, mirrors and proxies the
  operator's settings name (:func:`network_plan`) and what the operator allows crews
  (``CREWYARD_NETWORK_ALLOW``). The script starts only once the network is in place
  (``--block-fd``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import sys
from pathlib import Path

import msgspec

from crewyard import cgroups, privatenet, spawn
from crewyard.lines import LineSplitter
from crewyard.reaper import Reaper

from . import usage
from ._base import BuildFailed, LogSink
from .registry import Registry

ROOT = "/opt/crewyard"
ENV_PATH = f"{ROOT}/env"
SRC_PATH = f"{ROOT}/src"
SANDBOX_UID = 1000
STATUS_TIMEOUT_S = 30.0
_SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC = (
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "ssl", "ca-certificates", "ca-certificates.conf",
    "pki", "resolv.conf", "hosts", "host.conf", "nsswitch.conf", "gai.conf", "localtime",
    "timezone", "protocols", "services", "mime.types", "alternatives",
)  # fmt: skip
_PASSWD = f"root:x:0:0:root:/root:/usr/sbin/nologin\nbuild:x:{SANDBOX_UID}:{SANDBOX_UID}::/tmp:/bin/sh\n"
_GROUP = f"root:x:0:\nbuild:x:{SANDBOX_UID}:\n"


class BuildLimits(msgspec.Struct, kw_only=True):
    timeout_s: float = 1800.0
    address_space_bytes: int = 16 << 30
    file_size_bytes: int = 2 << 30
    #: What the scratch folder may take while building, and the environment once built: bytes at
    #: their apparent size (a sparse file counts whole: it is packed and unpacked whole).
    disk_bytes: int = 8 << 30
    #: Files and folders the environment may hold (inodes of every runner's disk); the scratch
    #: folder may hold twice as many while building (uv's cache holds a copy of what is installed).
    entries: int = 500_000
    tmp_bytes: int = 1 << 30
    #: Memory and processes (threads count) at once, through a control group where there is one.
    memory_bytes: int = 4 << 30
    pids: int = 2048


def _addresses(host: str) -> set[ipaddress.IPv4Address]:
    try:
        infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return set()  # unresolvable here: the build will say so in the installer's words
    return {ipaddress.IPv4Address(info[4][0]) for info in infos}


def network_plan(
    registry: Registry, policy: privatenet.NetworkPolicy
) -> tuple[privatenet.NetworkPlan, list[str]]:
    """The build's private network, and notes for the build log (blocking: resolves names).

    A registry, mirror or proxy on a private range (a company mirror at ``10.1.2.3``) is allowed
    by address; one on this machine never is — a build could then reach every service here —
    and the note says so.
    """
    own = {n.network_address for n in privatenet.host_addresses()}
    allow = list(policy.allow)
    notes: list[str] = []
    for host in registry.hosts():
        for address in sorted(_addresses(host)):
            if address.is_loopback or address in own:
                notes.append(
                    f"the registry settings name {host} ({address}), on this machine: builds run in a"
                    " private network that cannot reach this machine; serve it on another machine"
                )
            elif any(address in net for net in privatenet.PRIVATE):
                allow.append(f"{address}/32")
    try:
        return privatenet.plan(privatenet.NetworkPolicy(allow=tuple(allow))), notes
    except privatenet.NetworkError as exc:
        raise BuildFailed(f"cannot give the build its network: {exc}") from None


def uv_binary() -> str:
    found = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    if not os.access(found, os.X_OK):
        raise BuildFailed("uv is not installed on the build machine (pip install uv)")
    return str(Path(found).resolve())


def bwrap_binary() -> str:
    found = shutil.which("bwrap")
    if not found:
        raise BuildFailed(
            "builds run in a bubblewrap sandbox, and bwrap is not installed (apt-get install bubblewrap)"
        )
    return found


def system_binds() -> list[str]:
    """The host's programs and libraries, read-only, for a build's sandbox and a run's: ``/usr``,
    and ``/bin``, ``/lib``… as on the host (links to ``usr/…`` on a merged ``/usr``). Never the
    host's whole root: a recursive bind of ``/`` takes every mount under it, and one that goes
    meanwhile (a container's overlay, as a container engine removes it) fails the sandbox's start."""
    args = ["--ro-bind", "/usr", "/usr"]
    for d in _SYSTEM_DIRS:
        p = Path(d)
        if p.is_symlink():  # merged /usr: keep it a link, as on the host
            args += ["--symlink", os.readlink(p), d]
        elif p.is_dir():
            args += ["--ro-bind", d, d]
    return args


def command(
    scratch: Path, prefixes: list[str], registry: Registry, limits: BuildLimits, status_fd: int, block_fd: int
) -> list[str]:
    files = scratch.parent / f"{scratch.name}.files"
    args = [bwrap_binary(), "--unshare-all", "--die-with-parent", "--new-session",
            "--cap-drop", "ALL", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
            "--hostname", "crewyard-build", "--info-fd", str(status_fd), "--block-fd", str(block_fd),
            *system_binds()]  # fmt: skip
    for name in _ETC:
        if name != "resolv.conf":
            args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    args += ["--ro-bind", str(files / "resolv.conf"), "/etc/resolv.conf",  # the private network's resolver
             "--ro-bind", str(files / "passwd"), "/etc/passwd",
             "--ro-bind", str(files / "group"), "/etc/group",
             "--proc", "/proc", "--dev", "/dev",
             "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp"]  # fmt: skip
    for prefix in prefixes:  # an interpreter outside /usr (the machine's Python under /root …)
        if not Path(prefix).is_relative_to("/usr"):
            args += ["--ro-bind", prefix, prefix]
    for host, inside in sorted(registry.binds.items()):
        args += ["--ro-bind-try", host, inside]
    # The env folder is a mount point of its own: the build may fill it but never remove, rename
    # or replace it (EBUSY), so it cannot leave a symbolic link to a host path where the host,
    # as root, then sanitizes, packs and installs the environment from.
    args += ["--bind", str(scratch), ROOT,
             "--bind", str(scratch / "env"), ENV_PATH,
             "--ro-bind", uv_binary(), f"{ROOT}/bin/uv",
             "--ro-bind", str(files / "build.sh"), f"{ROOT}/bin/build.sh",
             "--remount-ro", "/", "--chdir", SRC_PATH, "/bin/sh", f"{ROOT}/bin/build.sh"]  # fmt: skip
    return args


#: Files a build's process may hold open (as in a build container): not the builder's own limit.
BUILD_NOFILE = 4096

#: What every build (sandbox or build container) runs with, whatever its paths.
BUILD_SETTINGS = {
    "HOME": "/tmp",
    "LANG": "C.UTF-8",
    "UV_PYTHON_DOWNLOADS": "never",
    # Where packages come from is the platform's (its registry settings), never a crew's uv.toml
    # or [tool.uv]: those are not in an environment's digest, and a crew that shares a digest
    # with another project's (the same requirements.txt) must not choose its packages.
    "UV_NO_CONFIG": "1",
    "UV_NO_PROGRESS": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
}


def environment(registry: Registry) -> dict[str, str]:
    return {
        **registry.env,
        **BUILD_SETTINGS,
        "PATH": f"{ENV_PATH}/bin:{ROOT}/bin:/usr/local/bin:/usr/bin:/bin",
        "TMPDIR": "/tmp",
        "UV_CACHE_DIR": f"{ROOT}/cache",
        "npm_config_cache": f"{ROOT}/cache/npm",
    }


def over_disk(root: Path, limits: BuildLimits) -> str | None:
    """Why what a build wrote below ``root`` (its scratch folder, a build container's writable
    layer) is over the disk limits; None within them (blocking; :mod:`.usage`)."""
    return usage.over(root, limits.disk_bytes, 2 * limits.entries, "the build wrote")


async def run(
    scratch: Path,
    script: str,
    prefixes: list[str],
    registry: Registry,
    limits: BuildLimits,
    log: LogSink,
    network: privatenet.NetworkPolicy | None = None,
) -> None:
    """Run ``script`` (sh) in the sandbox; BuildFailed with the installer's words (or the limit
    that stopped it) when it fails."""
    files = scratch.parent / f"{scratch.name}.files"
    group: cgroups.Cgroup | None = None
    try:  # the files folder goes however the set-up ends (no network for the build, no group …)
        await asyncio.to_thread(_prepare, scratch, files, script)
        plan, notes = await asyncio.to_thread(network_plan, registry, network or privatenet.NetworkPolicy())
        await asyncio.to_thread((files / "resolv.conf").write_text, plan.resolv_conf)
        for note in notes:
            await log(note, "stdout")
        group = await asyncio.to_thread(_new_group, scratch.name, limits)
        await _run_in(group, plan, scratch, files, prefixes, registry, limits, log)
    finally:
        if group is not None:
            await asyncio.to_thread(group.remove)
        await asyncio.to_thread(shutil.rmtree, files, True)


def _prepare(scratch: Path, files: Path, script: str) -> None:
    """The scratch folder's parts, and the files bound read-only into the sandbox beside it."""
    files.mkdir(parents=True, exist_ok=True)
    (files / "passwd").write_text(_PASSWD)
    (files / "group").write_text(_GROUP)
    (files / "build.sh").write_text(script)
    for sub in ("env", "src", "cache", "bin"):
        (scratch / sub).mkdir(parents=True, exist_ok=True)


def _new_group(name: str, limits: BuildLimits) -> cgroups.Cgroup | None:
    cgroups.sweep()  # what builders and runners that are gone left behind, whoever they were
    owner = cgroups.owner_tag()
    group = cgroups.create(
        cgroups.group_name(owner, "build", name),
        memory_bytes=limits.memory_bytes,
        pids=limits.pids,
        cpus=None,
    )
    if group is not None:
        Reaper.ensure(owner)  # the build's group goes when this process does, however it dies
    return group


async def _run_in(
    group: cgroups.Cgroup | None,
    plan: privatenet.NetworkPlan,
    scratch: Path,
    files: Path,
    prefixes: list[str],
    registry: Registry,
    limits: BuildLimits,
    log: LogSink,
) -> None:
    procs_files = group.procs_files() if group else []
    rlimits = {
        "core": 0,
        "fsize": limits.file_size_bytes,
        "as": limits.address_space_bytes,
        "nofile": BUILD_NOFILE,
    }
    status_r, status_w = os.pipe()
    block_r, block_w = os.pipe()
    try:
        # bwrap and everything it starts are inside the group from the start; the builder is not
        # forked for it (crewyard.spawn). A builder that died since is not outlived.
        argv = spawn.confined(
            command(scratch, prefixes, registry, limits, status_w, block_r),
            cgroup_procs=procs_files,
            parent_pid=os.getpid(),
            limits=rlimits,
        )
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env=environment(registry),
            cwd="/",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            pass_fds=(status_w, block_r),
            limit=1 << 20,
        )
    except (OSError, spawn.SpawnError) as exc:
        for fd in (status_r, block_w):
            os.close(fd)
        raise BuildFailed(f"cannot start the build sandbox: {exc}") from exc
    finally:
        os.close(status_w)
        os.close(block_r)
    stack: privatenet.PrivateNetwork | None = None
    try:
        try:
            stack = await _connect(status_r, plan)
        except BaseException:
            _kill(proc)  # before the block ends: end-of-file would let bwrap go on too
            os.close(block_w)
            raise
        with contextlib.suppress(OSError):  # the sandbox may be gone already
            os.write(block_w, b"1")  # the script starts now, with its network in place
        os.close(block_w)
        await _watch(proc, group, scratch, limits, log)
    finally:
        if proc.returncode is None:
            _kill(proc)
            await proc.wait()
        if stack is not None:
            await asyncio.to_thread(stack.close)


async def _connect(status_r: int, plan: privatenet.NetworkPlan) -> privatenet.PrivateNetwork:
    """The private network of the sandbox whose status bwrap writes to ``status_r``."""

    def pid() -> int:
        with os.fdopen(status_r, "rb") as info:  # bwrap writes it once, then closes it
            text = info.read(1 << 16)
        try:
            return int(json.loads(text)["child-pid"])
        except (ValueError, KeyError, TypeError):
            raise BuildFailed("the build sandbox did not start (bwrap reported no process)") from None

    child = await asyncio.wait_for(asyncio.to_thread(pid), STATUS_TIMEOUT_S)
    try:
        return await privatenet.attach(child, plan)
    except privatenet.NetworkError as exc:
        raise BuildFailed(f"cannot give the build its network: {exc}") from None


async def _watch(
    proc: asyncio.subprocess.Process,
    group: cgroups.Cgroup | None,
    scratch: Path,
    limits: BuildLimits,
    log: LogSink,
) -> None:
    over: list[str] = []

    async def watch_limits() -> None:
        ticks = 0
        while proc.returncode is None:
            await asyncio.sleep(0.5)
            ticks += 1
            if group is not None and group.pids_limit_hit():
                over.append(f"the build started more than {limits.pids} processes at once (process limit)")
            elif ticks % 4 == 0 and (why := await asyncio.to_thread(over_disk, scratch, limits)):
                over.append(why)
            if over:
                _kill(proc)
                return

    async def pump() -> list[str]:
        assert proc.stdout is not None
        tail: list[str] = []
        cutter = LineSplitter("stdout")  # a line of megabytes comes in pieces, never an error
        while True:
            chunk = await proc.stdout.read(65536)
            for _, raw in cutter.feed(chunk) if chunk else cutter.finish():
                line = raw.decode(errors="replace").rstrip()
                tail = [*tail[-60:], line]
                await log(line, "stdout")
            if not chunk:
                return tail

    watcher = asyncio.create_task(watch_limits())
    try:
        tail = await asyncio.wait_for(pump(), limits.timeout_s)
        code = await proc.wait()
    except TimeoutError:
        _kill(proc)
        await proc.wait()
        raise BuildFailed(f"the build took longer than {limits.timeout_s:.0f} s (time limit)") from None
    finally:
        watcher.cancel()
    if group is not None and group.oom_killed():
        over.append(f"the build ran out of memory (limit {limits.memory_bytes >> 20} MiB)")
    elif group is not None and group.pids_limit_hit():
        over.append(f"the build started more than {limits.pids} processes at once (process limit)")
    if over:
        raise BuildFailed(over[0])
    if code != 0:
        raise BuildFailed("dependencies failed to install:\n" + error_excerpt(tail))


def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def error_excerpt(tail: list[str]) -> str:
    """The installer's own words: from its first error line on (at most 12 lines)."""
    lines = [ln for ln in tail if ln.strip()]
    start = next(
        (i for i, ln in enumerate(lines) if "error" in ln.lower() or ln.lstrip().startswith("\u00d7")), 0
    )
    return "\n".join(lines[start : start + 12])
