"""The disk a run's files take while it runs, watched: a crew that writes without end (many files,
each under the file-size limit) is stopped before it fills the runner's disk, as one that
writes events without end is stopped by its budget (:mod:`.output`).

What is measured is the folder the run writes into (``RunHandle.files_folder``: its artifacts
folder, a forked run's slot, a local engine's volume); ``/tmp`` is a tmpfs whose pages count
against the run's memory, and everything else is read-only. The crew owns the folder and may
fill it with anything: the walk opens every folder relative to its parent, follows no link,
counts blocks (a sparse file costs what it holds), and gives up — counting that as over the
limit — past :data:`MAX_ENTRIES` entries or :data:`MAX_DEPTH` levels, or on a folder it cannot
open. A remote engine's volume is not on this host: not watched (the engine's storage options
bound it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import time
from pathlib import Path

from .backends import RunHandle
from .output import Outcome, stop

#: A walk gives up past this many entries (each one is an inode of the runner's disk too).
MAX_ENTRIES = 1_000_000
MAX_DEPTH = 256
#: Seconds between two walks at least; a walk that took long waits ten times its time.
POLL_S = 2.0
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class _Over(Exception):
    pass


class _Usage:
    def __init__(self, limit: int) -> None:
        self.limit, self.bytes, self.entries = limit, 0, 0

    def folder(self, fd: int, depth: int) -> None:
        with os.scandir(fd) as entries:
            for entry in entries:
                self.entries += 1
                if self.entries > MAX_ENTRIES:
                    raise _Over(f"the run made more than {MAX_ENTRIES:,} files and folders")
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # removed meanwhile
                self.bytes += st.st_blocks * 512
                if self.bytes > self.limit:
                    raise _Over(
                        f"the run's files take more than {self.limit >> 20} MiB, its disk limit"
                        " (CREWYARD_RUN_MAX_DISK)"
                    )
                if stat.S_ISDIR(st.st_mode):
                    self.sub(fd, entry.name, depth + 1)

    def sub(self, parent: int, name: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise _Over(f"the run nested folders deeper than {MAX_DEPTH}")
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _Over(f"the run made a folder the runner cannot read ({exc.strerror})") from exc
        try:
            self.folder(fd, depth)
        finally:
            os.close(fd)


def over(root: Path, limit: int) -> str | None:
    """Why the files under ``root`` are over ``limit`` bytes (or cannot be counted, which is
    taken as over); None within it (blocking)."""
    usage = _Usage(limit)
    try:
        fd = os.open(root, _DIR_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"the run's artifacts folder cannot be read ({exc.strerror})"
    try:
        usage.folder(fd, 0)
    except _Over as exc:
        return str(exc)
    finally:
        os.close(fd)
    return None


async def watch(handle: RunHandle, limit: int, outcome: Outcome) -> None:
    """Until cancelled: stop the run (reason ``limit``) once its files go over ``limit`` bytes."""
    folder = await handle.files_folder()
    if folder is None:
        return
    while outcome.stopped is None:
        began = time.monotonic()
        with contextlib.suppress(OSError):
            if (what := await asyncio.to_thread(over, folder, limit)) is not None:
                stop(outcome, what, "limit")
                return
        await asyncio.sleep(max(POLL_S, 10 * (time.monotonic() - began)))
