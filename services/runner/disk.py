"""The disk a run's files take while it runs, watched: a crew that writes without end (many files,
each under the file-size limit) is stopped before it fills the runner's disk, as one that
writes events without end is stopped by its budget (:mod:`.output`).

What is measured is the folder the run writes into (``RunHandle.files_folder``: its artifacts
folder, a forked run's slot, a local engine's volume); ``/tmp`` is a tmpfs whose pages count
against the run's memory, and everything else is read-only. The crew owns the folder and may
fill it with anything: the walk opens every folder relative to its parent, follows no link,
counts blocks (a sparse file costs what it holds), and gives up — counting that as over the
limit — past :data:`MAX_ENTRIES` entries or :data:`MAX_DEPTH` levels, or on anything it cannot
read (a folder made unreadable, or listable but not searchable, would hide what is in it). It
holds one descriptor per level (a folder's names are read, and its listing closed, before its
sub-folders are walked); when the runner itself is out of descriptors the round is skipped,
never held against the crew. The pause between walks is at most :data:`MOST_PAUSE_S`, whatever
a walk costs.

Not seen by a walk: a volume of an engine that is not on this host, or that this runner may not
read whole (a rootless engine's: only a root runner reads it), and a file the crew unlinked
while keeping it open — the file-size limit per file and the open-files limit bound those.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import stat
import time
from pathlib import Path

from .backends import RunHandle
from .output import Outcome, stop

#: A walk gives up past this many entries (each one is an inode of the runner's disk too), as
#: the artifact collector does.
MAX_ENTRIES = 200_000
MAX_DEPTH = 64
#: Seconds between two walks at least; a walk that took long waits ten times its time, at most
#: ``MOST_PAUSE_S`` (a crew whose files make walks slow must not make them rare).
POLL_S = 2.0
MOST_PAUSE_S = 5.0
#: The runner's own shortage of descriptors: a round that cannot be made, not the crew's doing.
_OURS = (errno.EMFILE, errno.ENFILE, errno.ENOMEM)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class _Over(Exception):
    pass


class _Skip(Exception):
    """This round cannot be made (the runner is short of descriptors or memory)."""


def _unreadable(exc: OSError) -> Exception:
    if exc.errno in _OURS:
        return _Skip(str(exc))
    return _Over(f"the run made a folder the runner cannot read ({exc.strerror})")


class _Usage:
    def __init__(self, limit: int) -> None:
        self.limit, self.bytes, self.entries = limit, 0, 0

    def folder(self, fd: int, depth: int) -> None:
        subfolders = []
        try:
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
                        subfolders.append(entry.name)
        except OSError as exc:  # a listing or a stat refused: what it hides cannot be counted
            raise _unreadable(exc) from exc
        for name in subfolders:  # the listing is closed: one descriptor per level
            self.sub(fd, name, depth + 1)

    def sub(self, parent: int, name: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise _Over(f"the run nested folders deeper than {MAX_DEPTH}")
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _unreadable(exc) from exc
        try:
            self.folder(fd, depth)
        finally:
            os.close(fd)


def over(root: Path, limit: int) -> str | None:
    """Why the files under ``root`` are over ``limit`` bytes (or cannot be counted, which is
    taken as over); None within it (blocking). OSError when the runner is short of descriptors
    or memory: no answer this time."""
    usage = _Usage(limit)
    try:
        fd = os.open(root, _DIR_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in _OURS:
            raise
        return f"the run's artifacts folder cannot be read ({exc.strerror})"
    try:
        usage.folder(fd, 0)
    except _Over as exc:
        return str(exc)
    except _Skip as exc:
        raise OSError(errno.EMFILE, str(exc)) from exc
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
        await asyncio.sleep(min(MOST_PAUSE_S, max(POLL_S, 10 * (time.monotonic() - began))))
