"""The runner's identity: one name that survives restarts, held by one live process at a time.

The id is ``CREWYARD_RUNNER_ID`` when configured, else made once (host name + random suffix) and
kept in the data dir's ``runner-id`` file. Because a restarted runner has its predecessor's id, it
recognises what the predecessor left — containers labelled with the id, runs the stream says the
id was executing — as certainly dead, and cleans it up or hands it on at once instead of waiting
for a lease to run out.

That conclusion needs the id to be unique among live processes. A lock file in the data dir,
held for the runner's lifetime, makes a second process with the same id on the same machine
fail at start-up; across machines, a configured id must be unique (the generated one is).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import socket
from pathlib import Path

from crewyard.errors import CrewyardError

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


class IdentityInUse(CrewyardError, RuntimeError):
    """Another live runner process holds this runner id."""


class RunnerIdentity:
    def __init__(self, runner_id: str, lock_fd: int) -> None:
        self.runner_id = runner_id
        self._lock_fd: int | None = lock_fd

    @classmethod
    def claim(cls, data_dir: Path, configured: str = "") -> RunnerIdentity:
        data_dir.mkdir(parents=True, exist_ok=True)
        runner_id = configured or _stored_id(data_dir / "runner-id")
        lock = data_dir / f"runner-{_SAFE.sub('_', runner_id)[:100]}.lock"
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise IdentityInUse(
                f"runner id {runner_id!r} is in use by another runner process ({lock}); give each"
                " runner its own data dir or its own CREWYARD_RUNNER_ID"
            ) from None
        return cls(runner_id, fd)

    def release(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)  # closing drops the lock
            self._lock_fd = None


def _stored_id(path: Path) -> str:
    with contextlib.suppress(OSError):
        stored = path.read_text().strip()
        if stored:
            return stored
    made = f"{_SAFE.sub('_', socket.gethostname())[:40]}-{secrets.token_hex(4)}"
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(made + "\n")
    try:
        os.link(tmp, path)  # atomic and exclusive: if two start at once, both read the winner's
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_text().strip()
