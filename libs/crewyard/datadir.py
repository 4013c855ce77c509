"""The data dir is private: the read model holds every run's input and output, the NATS store
every event, ``secret.key`` the key to every project's secrets, ``admin.key`` the first admin API
key.

The data dir and the folders the platform keeps in it are 0700 — made so, or tightened at start
when an older install left them open — and the files that matter most are 0600 on their own.
A process-wide umask would do the same for every file, but it would also strip the read bits
that a sandbox running as another user needs on what it is given (crew sources become container
images owned by root); a closed data dir already keeps other users from everything below it.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("crewyard")

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
