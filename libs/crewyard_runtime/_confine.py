"""A forked run's own sandbox, inside a sandboxed fork server (``forkserver``, ``"sandbox"`` requests).

A bwrap fork server runs in a user namespace of its own in which it holds four capabilities
(``CAP_SYS_ADMIN``, ``CAP_NET_ADMIN``, ``CAP_SYS_RESOURCE``, ``CAP_SETPCAP``); nothing else. For
each run its keeper (:func:`enter`) moves into new mount, network, IPC and UTS namespaces and
makes the next child the first process of a new pid namespace, then sets them up:

- a fresh ``/tmp`` (tmpfs, sized) holding a copy of what the import left in the server's (as a
  warm sandbox's run finds it: CrewAI keeps its storage there), a fresh ``/dev/shm``, the run's
  own host folder (its *slot*, which the runner made for it in the server's slots folder) bound
  at ``/artifacts``, and the slots folder itself covered by an empty read-only tmpfs, so no run
  sees another's;
- the host name, and a loopback that is up (the runner adds the private network, if any, from
  outside, as it does for a sandbox bwrap made).

The run's *init* (:func:`become_init`), pid 1 of the new pid namespace, mounts a fresh ``/proc``
(it sees only the run's processes), forbids user namespaces from then on (the server's user
namespace may hold no more), and drops every capability, for good (bounding set, ``no_new_privs``)
before the run is forked from it. It then reaps what is re-parented to it and exits with the run's
status (128 + N for a signal, as bubblewrap's init does); when it ends, the kernel kills whatever
is left in the namespace.

Only the standard library: this runs inside the crew's interpreter.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import re
import signal
import socket
import stat
import struct
from typing import Any

ARTIFACTS = "/artifacts"
#: Where the server's slots folder is bound (each run's slot is a folder in it).
SLOTS = "/run/crewyard/slots"

_CLONE_NEWNS, _CLONE_NEWUTS, _CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
_CLONE_NEWPID, _CLONE_NEWNET = 0x20000000, 0x40000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_BIND, _MS_REC, _MS_PRIVATE = 4096, 16384, 1 << 18
_PR_CAPBSET_DROP, _PR_SET_NO_NEW_PRIVS, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 24, 38, 47, 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1

_libc = ctypes.CDLL(None, use_errno=True)


class ConfineError(OSError):
    """A step of the run's sandbox failed: the run must not start."""


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise ConfineError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(
        _libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack("16sH", fcntl.ioctl(s, _SIOCGIFFLAGS, struct.pack("16sH14x", b"lo", 0))[:18])[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


def _copy(source: int, target: str) -> None:
    """The folder open as ``source`` into ``target``: folders, files and links as they are,
    nothing of another file system (the mounts below it are bound again, not copied)."""
    device = os.fstat(source).st_dev
    for entry in os.scandir(source):
        st = entry.stat(follow_symlinks=False)
        path = os.path.join(target, entry.name)
        if st.st_dev != device:
            continue
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(entry.name, dir_fd=source), path)
        elif stat.S_ISDIR(st.st_mode):
            os.makedirs(path, mode=stat.S_IMODE(st.st_mode), exist_ok=True)
            inner = os.open(
                entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=source
            )
            try:
                if os.fstat(inner).st_dev == device:  # a mount point's own folder stays empty
                    _copy(inner, path)
            finally:
                os.close(inner)
        elif stat.S_ISREG(st.st_mode):
            src = os.open(entry.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=source)
            try:
                dst = os.open(
                    path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, stat.S_IMODE(st.st_mode)
                )
                try:
                    while chunk := os.read(src, 1 << 20):
                        os.write(dst, chunk)
                finally:
                    os.close(dst)
            finally:
                os.close(src)


def _mounts_under(prefix: str) -> list[str]:
    """Mount points below ``prefix`` (not those below another of them: they come along)."""
    found: list[str] = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
            if point.startswith(prefix):
                found.append(point)
    found.sort()
    return [p for i, p in enumerate(found) if not any(p.startswith(q + "/") for q in found[:i])]


def options(request: dict[str, Any]) -> dict[str, Any] | None:
    """The request's ``sandbox`` part, checked (None: the run is not sandboxed by its server)."""
    box = request.get("sandbox")
    if box is None:
        return None
    slot = box.get("slot") if isinstance(box, dict) else None
    tmp = box.get("tmp_size") if isinstance(box, dict) else None
    shm = box.get("shm_size", tmp) if isinstance(box, dict) else None  # (a runner before it: /tmp's)
    sizes = (tmp, shm)
    if (
        not isinstance(slot, str)
        or not slot.isalnum()
        or not all(isinstance(n, int) and n > 0 for n in sizes)
    ):
        raise ValueError("sandbox is {slot: name, tmp_size: bytes, shm_size: bytes, network: bool}")
    return {"slot": slot, "tmp_size": tmp, "shm_size": shm, "network": box.get("network") is not False}


def enter(box: dict[str, Any]) -> None:
    """The keeper's part: new namespaces (the pid one for its next child) and the run's mounts."""
    flags = _CLONE_NEWNS | _CLONE_NEWIPC | _CLONE_NEWUTS | _CLONE_NEWPID
    if box.get("network", True):
        flags |= _CLONE_NEWNET
    _check(_libc.unshare(flags), "unshare")
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    size = f"size={int(box['tmp_size'])},mode=1777"
    # The deployment's folders may lie under /tmp (bound there in the server's own /tmp): they
    # are bound again, read-only as they are, into the run's fresh one.
    under = _mounts_under("/tmp/")
    kept = {path: os.open(path, os.O_PATH | os.O_CLOEXEC) for path in under}
    before = os.open("/tmp", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    _mount("tmpfs", "/tmp", "tmpfs", _MS_NOSUID | _MS_NODEV, size)
    # What the import left in /tmp (CrewAI's storage, caches) is the run's to use, as in a warm
    # sandbox of its own: a copy, so that nothing a run writes there reaches another.
    try:
        _copy(before, "/tmp")
    finally:
        os.close(before)
    for path, fd in kept.items():
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            os.makedirs(path, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
        _mount(f"/proc/self/fd/{fd}", path, None, _MS_BIND | _MS_REC)
        os.close(fd)
    _mount("tmpfs", "/dev/shm", "tmpfs", _MS_NOSUID | _MS_NODEV, f"size={int(box['shm_size'])},mode=1777")
    _mount(f"{SLOTS}/{box['slot']}", ARTIFACTS, None, _MS_BIND)
    # The slots folder came with the server's mounts and cannot be unmounted here: it is covered.
    _mount("tmpfs", SLOTS, "tmpfs", _MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, "size=4k,mode=0555")
    socket.sethostname("crewyard")
    if flags & _CLONE_NEWNET:
        _loopback_up()


def become_init() -> None:
    """The run's pid 1: its own ``/proc``, no user namespaces, no capabilities (all for good)."""
    _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    with open("/proc/sys/user/max_user_namespaces", "w") as f:  # the server's user namespace's
        f.write("0")
    last = int(open("/proc/sys/kernel/cap_last_cap").read())  # noqa: SIM115 - read at once
    for cap in range(last + 1):
        _check(_libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0), "dropping the capability bounding set")
    _check(_libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clearing ambient capabilities")
    _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    header = ctypes.create_string_buffer(struct.pack("Ii", _LINUX_CAPABILITY_VERSION_3, 0))
    data = ctypes.create_string_buffer(24)  # two empty sets of (effective, permitted, inheritable)
    _check(_libc.capset(header, data), "dropping capabilities")
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a cancel is for the run (its process group)


def wait_for(run: int) -> int:
    """Reap every child until ``run`` has ended; the run's status as an exit code."""
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return 1
        if pid == run:
            code = os.waitstatus_to_exitcode(status)
            return code if code >= 0 else 128 - code
