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

A file the crew unlinked while keeping it open is in no folder, yet takes the disk until it is
closed (each up to the file-size limit, as many as the crew may open files). So the files the
run's processes hold open (``RunHandle.processes``: its control group's, a local container's,
else the crew's process tree) are looked at too, through ``/proc/PID/fd``: every regular file of
the folder's disk that no folder names any more is counted, once however often it is open. That
is best effort, not a bound: a crew that means to can hold such files where no ``/proc/PID/fd``
shows them (a thread's own descriptor table, descriptors in flight on a socket, a mapping, a
process that left the tree on the process backend), and a process whose open files the runner
may not look at (a zombie, a non-dumpable one for a runner that is not root) is skipped — never
held against the run. Only the kernel could count such files for certain (a file system or a
quota per run); until then the file-size limit per file and the open-files limit bound them.
At most :data:`MAX_OPEN` descriptors are looked at in a round; more count as over.

Not seen: a volume of an engine that is not on this host, or that this runner may not read whole
(a rootless engine's: only a root runner reads it) — bound it with the engine's storage options.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import stat
import time
from collections.abc import Iterable
from pathlib import Path

from crewyard import trees

from .backends import RunHandle
from .output import Outcome, stop

#: A walk gives up past this many entries (each one is an inode of the runner's disk too), as
#: the artifact collector does.
MAX_ENTRIES = 200_000
MAX_DEPTH = 64
#: The most open descriptors of a run's processes looked at in a round (each costs a ``stat``).
MAX_OPEN = 50_000
#: Seconds between two walks at least; a walk that took long waits ten times its time, at most
#: ``MOST_PAUSE_S`` (a crew whose files make walks slow must not make them rare).
POLL_S = 2.0
MOST_PAUSE_S = 5.0
#: The runner's own shortage of descriptors: a round that cannot be made, not the crew's doing.
_OURS = (errno.EMFILE, errno.ENFILE, errno.ENOMEM)


def unlinked(processes: Iterable[int], device: int) -> tuple[int, int]:
    """The bytes and number of regular files of ``device`` the processes hold open that no folder
    names (unlinked) and that hold any, each counted once. A process that ended meanwhile, or
    whose open files the runner may not look at, is skipped (see the module)."""
    files: dict[int, int] = {}
    looked = 0
    for pid in processes:
        try:
            with os.scandir(f"/proc/{pid}/fd") as fds:  # read as it goes: a table may be huge
                for fd in fds:
                    looked += 1
                    if looked > MAX_OPEN:
                        raise _TooManyOpen
                    try:
                        st = os.stat(fd.path)  # the open file itself (the link is magic)
                    except (FileNotFoundError, ProcessLookupError, PermissionError):
                        continue
                    if st.st_nlink == 0 and st.st_blocks and st.st_dev == device and stat.S_ISREG(st.st_mode):
                        files[st.st_ino] = st.st_blocks * 512
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue  # ended, a zombie, or not the runner's to look at
    return sum(files.values()), len(files)


class _TooManyOpen(Exception):
    pass


def over(root: Path, limit: int, processes: Iterable[int] | None = None) -> str | None:
    """Why the files under ``root`` — and, of ``processes``, the files of its disk they hold open
    but unlinked — are over ``limit`` bytes (or cannot be counted, which is taken as over); None
    within it (blocking). OSError when the runner is short of descriptors or memory: no answer
    this time."""
    total = entries = hidden = 0
    try:
        if processes is not None:
            total, hidden = unlinked(processes, os.lstat(root).st_dev)
        walk = trees.walk(root, max_depth=MAX_DEPTH, strict=True) if total <= limit else ()
        for _fd, _name, st in walk:
            entries += 1
            if entries > MAX_ENTRIES:
                return f"the run made more than {MAX_ENTRIES:,} files and folders"
            total += st.st_blocks * 512
            if total > limit:
                break
        if total > limit:
            why = f"the run's files take more than {limit >> 20} MiB, its disk limit (CREWYARD_RUN_MAX_DISK)"
            return f"{why}, {hidden} of them deleted but kept open" if hidden else why
    except FileNotFoundError:  # no folder (yet): nothing written
        return None
    except _TooManyOpen:
        return f"the run holds more than {MAX_OPEN:,} descriptors open"
    except trees.TooDeep:
        return f"the run nested folders deeper than {MAX_DEPTH}"
    except OSError as exc:
        if exc.errno in _OURS:
            raise
        if exc.filename == str(root):  # (the folder itself: swapped for a link, say)
            return f"the run's artifacts folder cannot be read ({exc.strerror})"
        return f"the run made a folder the runner cannot read ({exc.strerror})"
    return None


async def watch(handle: RunHandle, limit: int, outcome: Outcome) -> None:
    """Until cancelled: stop the run (reason ``limit``) once its files go over ``limit`` bytes."""
    folder = await handle.files_folder()
    if folder is None:
        return
    while outcome.stopped is None:
        began = time.monotonic()
        with contextlib.suppress(OSError):
            processes = await handle.processes()
            if (what := await asyncio.to_thread(over, folder, limit, processes)) is not None:
                stop(outcome, what, "limit")
                return
        await asyncio.sleep(min(MOST_PAUSE_S, max(POLL_S, 10 * (time.monotonic() - began))))
