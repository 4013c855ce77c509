"""The data dir is private: the read model holds every run's input and output, the NATS store
every event, ``secret.key`` the key to every project's secrets, ``admin.key`` the first admin API
key.

The data dir and the folders the platform keeps in it are 0700 — made so, or tightened at start
when an older install left them open — and the files that matter most are 0600 on their own.
A process-wide umask would do the same for every file, but it would also strip the read bits
that a sandbox running as another user needs on what it is given (crew sources become container
images owned by root); a closed data dir already keeps other users from everything below it.

A data dir serves one ``crewyard up`` at a time: :func:`claim` holds ``platform.lock`` (flock,
dropped by the kernel when the process ends) and is taken before anything is printed or written,
so a second start on the same data dir never rewrites the running platform's ``api.url`` and
``nats.url``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import stat
from pathlib import Path

from crewyard.errors import CrewyardError

log = logging.getLogger("crewyard")
LOCK_FILE = "platform.lock"


class DataDirInUse(CrewyardError, RuntimeError):
    """Another live platform (``crewyard up``) holds this data dir."""


#: Folders of the data dir, created private (tightened if they exist).
PRIVATE_DIRS = ("cache", "work", "tmp", "nats")
#: Files tightened when they exist (the read model and SQLite's companions, the key, logs).
PRIVATE_FILES = (
    "readmodel.sqlite3",
    "readmodel.sqlite3-wal",
    "readmodel.sqlite3-shm",
    "secret.key",
    "admin.key",
    "platform.log",
    "nats/server.log",
)


def _ours(st: os.stat_result) -> bool:
    return os.geteuid() in (0, st.st_uid)


def _tighten(path: Path, mode: int) -> bool:
    """chmod ``path`` to ``mode`` if we may and it is more open; True when it changed."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode) or not _ours(st) or stat.S_IMODE(st.st_mode) & ~mode == 0:
        return False
    os.chmod(path, stat.S_IMODE(st.st_mode) & mode)
    return True


def secure(data_dir: Path) -> list[str]:
    """Create ``data_dir`` and its folders private, tighten what an older install left open, and
    return what was tightened (also logged). A data dir of another user that others can enter is
    refused: the platform cannot make it private."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = data_dir.stat()
    if not _ours(st) and stat.S_IMODE(st.st_mode) & 0o077:
        raise PermissionError(
            f"data dir {data_dir} belongs to another user and others can enter it; make it 0700"
        )
    changed = [str(data_dir)] if _tighten(data_dir, 0o700) else []
    for name in PRIVATE_DIRS:
        folder = data_dir / name
        folder.mkdir(mode=0o700, exist_ok=True)
        if _tighten(folder, 0o700):
            changed.append(str(folder))
    for name in PRIVATE_FILES:
        if _tighten(data_dir / name, 0o600):
            changed.append(str(data_dir / name))
    if changed:
        log.warning("made private (readable by this user only): %s", ", ".join(changed))
    return changed


def private_file(path: Path) -> None:
    """Create ``path`` empty and 0600 unless it exists (then tighten it), before a library opens
    it with its own default mode (SQLite gives its WAL and SHM files the database's mode)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    except FileExistsError:
        _tighten(path, 0o600)


class PlatformLock:
    """A process's hold on a data dir; :meth:`release` (or the process ending) lets it go."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # closing drops the lock
            self._fd = None


def claim(data_dir: Path) -> PlatformLock:
    """Hold ``data_dir`` for this platform, or raise :class:`DataDirInUse` naming the live one
    (its process id, and the API it serves)."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 64).decode(errors="replace").strip()
        os.close(fd)
        running = _describe(data_dir, holder)
        raise DataDirInUse(
            f"a crewyard platform is already running on the data dir {data_dir} ({running});"
            " stop it first, or start this one with another --data-dir"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return PlatformLock(fd)


def _describe(data_dir: Path, holder: str) -> str:
    said = [f"process {holder}" if holder.isdigit() else "another process"]
    with contextlib.suppress(OSError, UnicodeDecodeError):
        api = (data_dir / "api.url").read_text().strip()
        if api:
            said.append(f"API {api}")
    return ", ".join(said)
