"""What a run in a bwrap sandbox is: the command line that makes the sandbox (namespaces, user,
the file system the run sees, the runtime's command) and the files of its own it is given.

The backend (:mod:`.bwrap`) starts this command and manages what it started; the module doc
there says what a run sees and why.
"""

from __future__ import annotations

import contextlib
import functools
import subprocess
import sys
from pathlib import Path

from crewyard.environments import ENV_PATH, nodejs, pythons
from crewyard.environments.sandbox import system_binds

from ._base import SHM_BYTES, RunSpec, runtime_command

SANDBOX_UID = 1000
#: What a fork server keeps of its user namespace's capabilities, to give each run namespaces and
#: mounts of its own (``crewyard_runtime/_confine.py``); its runs drop them all.
SERVER_CAPS = ("CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_SYS_RESOURCE", "CAP_SETPCAP")
#: Where a fork server's runs find their artifacts folder, and the server its runs' slots.
FORKED_ARTIFACTS = "/artifacts"
SLOTS = "/run/crewyard/slots"
#: Where a JavaScript crew's folder is, with the environment's node_modules beside it.
NODE_APP = "/opt/crewyard/app"
# What ordinary programs read from /etc: the dynamic linker, TLS roots, name resolution, time zone.
_ETC = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "pki",
    "resolv.conf",
    "hosts",
    "host.conf",
    "nsswitch.conf",
    "gai.conf",
    "localtime",
    "timezone",
    "protocols",
    "services",
    "mime.types",
    "alternatives",
)
PASSWD = (
    "root:x:0:0:root:/root:/usr/sbin/nologin\n"
    f"crew:x:{SANDBOX_UID}:{SANDBOX_UID}:crew:/tmp:/usr/sbin/nologin\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
)
GROUP = f"root:x:0:\ncrew:x:{SANDBOX_UID}:\nnogroup:x:65534:\n"


def base_prefix_of(venv_dir: Path) -> Path:
    """The prefix of the interpreter the environment was made from (``home`` in pyvenv.cfg), bound
    read-only into its runs: one of this machine's interpreters only. The environment is the
    crew's build's work, pyvenv.cfg included: a ``home`` it names alone (``/x``, so the prefix
    ``/``; a folder of the platform's data) would bind that host folder into every run."""
    cfg = venv_dir / "pyvenv.cfg"
    with contextlib.suppress(OSError):
        if not cfg.is_symlink():
            for line in cfg.read_text().splitlines():
                key, _, value = line.partition("=")
                if key.strip() == "home" and value.strip():
                    prefix = Path(value.strip()).resolve().parent
                    if prefix in known_prefixes():
                        return prefix
                    break
    return Path(sys.base_prefix)


@functools.cache
def known_prefixes() -> frozenset[Path]:
    """The installation prefixes of this machine's interpreters (those a build may use)."""
    found = {Path(i.prefix).resolve() for i in pythons.available()}
    return frozenset({*found, Path(sys.base_prefix).resolve()})


def _under(path: Path, parent: str) -> bool:
    return path == Path(parent) or path.is_relative_to(parent)


def sandbox_command(
    bwrap: str,
    spec: RunSpec,
    sandbox_files: Path,
    status_fd: int,
    *,
    tmp_size: int,
    node: nodejs.Node | None = None,
    heap_limit: bool = False,
    stage: Path | None = None,
) -> list[str]:
    """bwrap's command line for one run: the runtime's command inside the sandbox ``spec`` asks
    for, its own files (passwd, group, resolv.conf) taken from ``sandbox_files``.

    With ``stage``, the command of a fork server (``_bwrap_server``), which bwrap starts as an
    unprivileged user: the deployment's folders come from ``stage`` (``env``, ``source``,
    ``runtime``, ``prefix``, ``files``, ``slots``), where they are bound for it; it keeps
    :data:`SERVER_CAPS` in a user namespace of its own and has no artifacts folder of its own.
    """
    assert spec.venv_dir is not None

    def source(name: str, path: Path) -> str:
        return str(stage / name) if stage else str(path)

    if stage is None:
        args = [bwrap, "--unshare-all", *no_nested_userns(bwrap)]
    else:
        args = [bwrap, "--unshare-all", "--unshare-user"]
    if spec.limits.network == "host":
        args.append("--share-net")
    args += [
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        *(arg for cap in (SERVER_CAPS if stage else ()) for arg in ("--cap-add", cap)),
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_UID),
        "--hostname",
        "crewyard",
        "--json-status-fd",
        str(status_fd),
        *system_binds(),
    ]
    private = (sandbox_files / "resolv.conf").exists()
    for name in _ETC:
        if name == "resolv.conf" and private:  # the private network's own resolver
            args += ["--ro-bind", source("files", sandbox_files) + "/resolv.conf", "/etc/resolv.conf"]
        else:
            args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    args += [
        "--ro-bind",
        source("files", sandbox_files) + "/passwd",
        "/etc/passwd",
        "--ro-bind",
        source("files", sandbox_files) + "/group",
        "/etc/group",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        str(SHM_BYTES),
        "--tmpfs",
        "/dev/shm",
        # Private /tmp first: a bind under /tmp made before it would be hidden by it.
        "--size",
        str(tmp_size),
        "--tmpfs",
        "/tmp",
    ]
    prefix = Path(node.prefix) if node else base_prefix_of(spec.venv_dir)
    if not _under(prefix, "/usr"):
        args += ["--ro-bind", source("prefix", prefix), str(prefix)]
    # The environment was built at ENV_PATH (its scripts and compiled files name that path).
    args += ["--ro-bind", source("env", spec.venv_dir), ENV_PATH]
    args += ["--ro-bind", source("runtime", spec.runtime_dir), str(spec.runtime_dir)]
    if node:
        # Node looks for packages in the folders above a module: the crew's folder gets a
        # parent whose node_modules is the environment's.
        args += ["--ro-bind", str(spec.source_dir), NODE_APP,
                 "--symlink", f"{ENV_PATH}/node_modules", f"{NODE_APP}/../node_modules"]  # fmt: skip
    else:
        args += ["--ro-bind", source("source", spec.source_dir), str(spec.source_dir)]
    command = runtime_command(
        spec, python=f"{ENV_PATH}/bin/python", node=node.path if node else "",
        runtime_dir=str(spec.runtime_dir), env_dir=ENV_PATH, source_dir=NODE_APP, heap_limit=heap_limit,
    )  # fmt: skip
    if stage is not None:
        return [*args, "--dir", FORKED_ARTIFACTS, "--bind", source("slots", Path()), SLOTS,
                "--remount-ro", "/", "--chdir", "/", *command]  # fmt: skip
    artifacts = str(spec.artifacts_dir)
    args += [
        # Last, so that it wins when the artifacts folder lies below one of the read-only binds.
        "--bind", artifacts, artifacts,
        # The sandbox's root is a tmpfs bwrap made; read-only, nothing outside /tmp, /dev/shm
        # and the artifacts folder takes a write (the mounts made above keep their own flags).
        "--remount-ro", "/",
        "--chdir", artifacts,
        *command,
    ]  # fmt: skip
    return args


@functools.cache
def no_nested_userns(bwrap: str) -> tuple[str, ...]:
    """``--disable-userns`` (bubblewrap 0.8+): the crew may not make user namespaces of its own
    (less kernel to attack). Older versions lack it; their sandboxes are as before."""
    try:
        text = subprocess.run(
            [bwrap, "--help"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return ("--unshare-user", "--disable-userns") if "--disable-userns" in text else ()


def trial(command: list[str], what: str) -> str | None:
    """Why a trial sandbox (``command``, running ``true``) did not run, or None when it did."""
    try:
        res = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{what} does not run: {exc}"
    if res.returncode != 0:
        return f"{what} cannot create namespaces here: {res.stderr.strip()[:300] or res.returncode}"
    return None
