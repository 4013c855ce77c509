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
- limits: wall-clock time, address space, file size, no core dumps; the scratch folder's size
  is watched and the build is killed past the disk limit;
- network: what :func:`network_args` gives (the registries must be reachable).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import signal
import sys
from pathlib import Path

import msgspec

from ._base import BuildFailed, LogSink
from .registry import Registry

ROOT = "/opt/crewyard"
ENV_PATH = f"{ROOT}/env"
SRC_PATH = f"{ROOT}/src"
SANDBOX_UID = 1000
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
    disk_bytes: int = 8 << 30
    tmp_bytes: int = 1 << 30


def network_args() -> list[str]:
    """How a build reaches the package registries.

    The build shares the host's network namespace for now: it needs the registries, and bwrap
    alone has no private network. This is the one place to change when builds get a private
    namespace with the host's own addresses unreachable, as runs will.
    """
    return ["--share-net"]


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


def command(scratch: Path, prefixes: list[str], registry: Registry, limits: BuildLimits) -> list[str]:
    files = scratch.parent / f"{scratch.name}.files"
    args = [bwrap_binary(), "--unshare-all", *network_args(), "--die-with-parent", "--new-session",
            "--cap-drop", "ALL", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
            "--hostname", "crewyard-build", "--ro-bind", "/usr", "/usr"]  # fmt: skip
    for d in _SYSTEM_DIRS:
        p = Path(d)
        if p.is_symlink():
            args += ["--symlink", os.readlink(p), d]
        elif p.is_dir():
            args += ["--ro-bind", d, d]
    for name in _ETC:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    args += ["--ro-bind", str(files / "passwd"), "/etc/passwd",
             "--ro-bind", str(files / "group"), "/etc/group",
             "--proc", "/proc", "--dev", "/dev",
             "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp"]  # fmt: skip
    for prefix in prefixes:  # an interpreter outside /usr (the machine's Python under /root …)
        if not Path(prefix).is_relative_to("/usr"):
            args += ["--ro-bind", prefix, prefix]
    for host, inside in sorted(registry.binds.items()):
        args += ["--ro-bind-try", host, inside]
    args += ["--bind", str(scratch), ROOT,
             "--ro-bind", uv_binary(), f"{ROOT}/bin/uv",
             "--ro-bind", str(files / "build.sh"), f"{ROOT}/bin/build.sh",
             "--remount-ro", "/", "--chdir", SRC_PATH, "/bin/sh", f"{ROOT}/bin/build.sh"]  # fmt: skip
    return args


def environment(registry: Registry) -> dict[str, str]:
    return {
        **registry.env,
        "PATH": f"{ENV_PATH}/bin:{ROOT}/bin:/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "UV_CACHE_DIR": f"{ROOT}/cache",
        "npm_config_cache": f"{ROOT}/cache/npm",
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_NO_PROGRESS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def _size(root: Path) -> int:
    total = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


async def run(
    scratch: Path, script: str, prefixes: list[str], registry: Registry, limits: BuildLimits, log: LogSink
) -> None:
    """Run ``script`` (sh) in the sandbox; BuildFailed with the installer's words when it fails."""
    files = scratch.parent / f"{scratch.name}.files"
    files.mkdir(parents=True, exist_ok=True)
    (files / "passwd").write_text(_PASSWD)
    (files / "group").write_text(_GROUP)
    (files / "build.sh").write_text(script)
    for sub in ("env", "src", "cache", "bin"):
        (scratch / sub).mkdir(parents=True, exist_ok=True)

    def _preexec() -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size_bytes, limits.file_size_bytes))
        resource.setrlimit(resource.RLIMIT_AS, (limits.address_space_bytes, limits.address_space_bytes))

    proc = await asyncio.create_subprocess_exec(
        *command(scratch, prefixes, registry, limits),
        env=environment(registry),
        cwd="/",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_preexec,
        limit=1 << 20,
    )
    over: list[str] = []

    async def watch_disk() -> None:
        while proc.returncode is None:
            await asyncio.sleep(2.0)
            if await asyncio.to_thread(_size, scratch) > limits.disk_bytes:
                over.append(f"the build wrote more than {limits.disk_bytes >> 20} MiB (disk limit)")
                _kill(proc)
                return

    async def pump() -> list[str]:
        assert proc.stdout is not None
        tail: list[str] = []
        async for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            tail = [*tail[-60:], line]
            await log(line, "stdout")
        return tail

    watcher = asyncio.create_task(watch_disk())
    try:
        tail = await asyncio.wait_for(pump(), limits.timeout_s)
        code = await proc.wait()
    except TimeoutError:
        _kill(proc)
        await proc.wait()
        raise BuildFailed(f"the build took longer than {limits.timeout_s:.0f} s (time limit)") from None
    finally:
        watcher.cancel()
        if proc.returncode is None:
            _kill(proc)
            await proc.wait()
        shutil.rmtree(files, ignore_errors=True)
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
