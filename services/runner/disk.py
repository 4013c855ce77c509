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
import time
from pathlib import Path

from crewyard import trees

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


def over(root: Path, limit: int) -> str | None:
    """Why the files under ``root`` are over ``limit`` bytes (or cannot be counted, which is
    taken as over); None within it (blocking). OSError when the runner is short of descriptors
    or memory: no answer this time."""
    total = entries = 0
    try:
        for _fd, _name, st in trees.walk(root, max_depth=MAX_DEPTH, strict=True):
            entries += 1
            if entries > MAX_ENTRIES:
                return f"the run made more than {MAX_ENTRIES:,} files and folders"
            total += st.st_blocks * 512
            if total > limit:
                mib = limit >> 20
                return f"the run's files take more than {mib} MiB, its disk limit (CREWYARD_RUN_MAX_DISK)"
    except FileNotFoundError:  # no folder (yet): nothing written
        return None
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
            if (what := await asyncio.to_thread(over, folder, limit)) is not None:
                stop(outcome, what, "limit")
                return
        await asyncio.sleep(min(MOST_PAUSE_S, max(POLL_S, 10 * (time.monotonic() - began))))
