"""What a build's files take: bytes at their apparent size, files and folders, depth.

A build is the crew's code and may leave anything behind: a sparse file (``truncate -s 2047M``)
takes no blocks but is 2 GiB once packed and unpacked on every runner; millions of empty files
or folders take no bytes but every inode of the disk; folders nested thousands deep overflow any
walk that recurses. So each entry counts at the larger of its size and its blocks, every entry
(folders too) counts against a bound, and the walk keeps its own stack (an open folder per level,
at most :data:`MAX_DEPTH` of them), opens each folder relative to its parent and follows no link.
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

#: Folders deeper than this below the walked one are refused (no environment nests so deep).
MAX_DEPTH = 256
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class TooDeep(Exception):
    """Folders nested deeper than :data:`MAX_DEPTH` below the walked one."""


def apparent_size(st: os.stat_result) -> int:
    """What an entry costs once packed and unpacked: its size, or its blocks when more."""
    return max(st.st_size, st.st_blocks * 512)


def walk(root: Path) -> Iterator[tuple[int, str, os.stat_result]]:
    """Every entry below ``root`` as (its folder's descriptor, its name, its ``lstat``), a folder
    before what it holds; no link followed, ``root`` included (an ``OSError`` when it is not a
    folder). Iterative: :class:`TooDeep` past :data:`MAX_DEPTH` levels. A folder removed meanwhile
    is skipped; one that cannot be opened is too (this host's root reads everything a build made).
    The descriptor is valid until the next entry is asked for."""
    top = os.open(root, _DIR_FLAGS)
    stack: list[tuple[int, Iterator[os.DirEntry[str]]]] = []
    try:
        stack.append((top, os.scandir(top)))
    except BaseException:
        os.close(top)
        raise
    try:
        while stack:
            fd, entries = stack[-1]
            entry = next(entries, None)
            if entry is None:
                _close(*stack.pop())
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            yield fd, entry.name, st
            if not stat.S_ISDIR(st.st_mode):
                continue
            if len(stack) >= MAX_DEPTH:
                raise TooDeep(f"folders nested deeper than {MAX_DEPTH}")
            try:
                sub = os.open(entry.name, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                continue  # gone, or replaced by something that is not a folder
            try:
                stack.append((sub, os.scandir(sub)))
            except BaseException:
                os.close(sub)
                raise
    finally:
        while stack:
            _close(*stack.pop())


def _close(fd: int, entries: Iterator[os.DirEntry[str]]) -> None:
    close = getattr(entries, "close", None)
    if close is not None:
        close()
    os.close(fd)


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
    except TooDeep as exc:
        return f"{what} {exc} (depth limit)"
    return None


def remove(root: Path) -> None:
    """``shutil.rmtree(root, ignore_errors=True)`` without its recursion (Python 3.11's, which
    fails past about a thousand levels) nor a descriptor per level: a folder's subfolders are
    moved up to ``root`` before it is removed, so however deep a build nested folders, this holds
    two open folders at a time. No link is followed (``root`` a link: the link is removed)."""
    try:
        top = os.open(root, _DIR_FLAGS)
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
                fd = top if name is None else os.open(name, _DIR_FLAGS, dir_fd=top)
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
