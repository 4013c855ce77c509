"""What a build's files take: bytes at their apparent size, files and folders, depth.

A build is the crew's code and may leave anything behind: a sparse file (``truncate -s 2047M``)
takes no blocks but is 2 GiB once packed and unpacked on every runner; millions of empty files
or folders take no bytes but every inode of the disk; folders nested thousands deep overflow any
walk that recurses. So each entry counts at the larger of its size and its blocks, every entry
(folders too) counts against a bound, and the walk (:mod:`crewyard.trees`, as a run's disk watch
walks) keeps its own stack, at most :data:`MAX_DEPTH` levels, one descriptor each, opens each
folder relative to its parent and follows no link.
A file with more than one name (a hard link) counts once. The walk stops as soon as a bound is
passed: what is over the limit is never walked to its end. What a build left is removed the same
way (:func:`remove`), never by a walk that recurses.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from crewyard import trees

#: Folders deeper than this below the walked one are refused (no environment nests so deep).
MAX_DEPTH = 256


def apparent_size(st: os.stat_result) -> int:
    """What an entry costs once packed and unpacked: its size, or its blocks when more."""
    return max(st.st_size, st.st_blocks * 512)


def walk(root: Path, *, strict: bool = False) -> Iterator[tuple[int, str, os.stat_result]]:
    """Every entry below ``root`` (:func:`crewyard.trees.walk`, at most :data:`MAX_DEPTH`
    levels); what cannot be read is skipped (this host's root reads everything a build made),
    or with ``strict`` its ``OSError`` raised."""
    return trees.walk(root, max_depth=MAX_DEPTH, strict=strict)


def over(root: Path, most_bytes: int, most_entries: int, what: str) -> str | None:
    """Why the files below ``root`` are over ``most_bytes`` (apparent size) or ``most_entries``
    (files and folders), in words about ``what`` ("the build wrote", …); None within both, or
    when there is no ``root`` or it cannot be read (a build container's writable layer under a
    rootless engine's storage; as the walk it replaced, which counted what it could read)
    (blocking)."""
    total = count = 0
    seen: set[tuple[int, int]] = set()
    try:
        for _fd, _name, st in walk(root):
            count += 1
            if count > most_entries:
                return f"{what} more than {most_entries:,} files and folders (file count limit)"
            if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
            total += apparent_size(st)
            if total > most_bytes:
                return f"{what} more than {most_bytes >> 20} MiB (disk limit)"
    except OSError:
        return None
    except trees.TooDeep as exc:
        return f"{what} {exc} (depth limit)"
    return None


def remove(root: Path) -> None:
    """``shutil.rmtree(root, ignore_errors=True)`` without its recursion (Python 3.11's, which
    fails past about a thousand levels) nor a descriptor per level: a folder's subfolders are
    moved up to ``root`` before it is removed, so however deep a build nested folders, this holds
    two open folders at a time. No link is followed (``root`` a link: the link is removed)."""
    try:
        top = os.open(root, trees.DIR_FLAGS)
    except FileNotFoundError:
        return
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(root)
        return
    prefix, moved = f".crewyard-rm-{secrets.token_hex(4)}-", itertools.count()
    try:
        pending: list[str | None] = [None]  # None: root itself
        while pending:
            name = pending.pop()
            try:
                fd = top if name is None else os.open(name, trees.DIR_FLAGS, dir_fd=top)
            except OSError:
                continue
            try:
                with os.scandir(fd) as entries:
                    children = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
                for child, is_dir in children:
                    if not is_dir:
                        with contextlib.suppress(OSError):
                            os.unlink(child, dir_fd=fd)
                    elif name is None:
                        pending.append(child)
                    else:
                        up = f"{prefix}{next(moved)}"
                        with contextlib.suppress(OSError):
                            os.rename(child, up, src_dir_fd=fd, dst_dir_fd=top)
                            pending.append(up)
            except OSError:
                pass
            finally:
                if fd != top:
                    os.close(fd)
            if name is not None:
                with contextlib.suppress(OSError):
                    os.rmdir(name, dir_fd=top)
    finally:
        os.close(top)
    with contextlib.suppress(OSError):
        os.rmdir(root)
