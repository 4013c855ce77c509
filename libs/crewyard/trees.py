"""Walking a folder filled by someone else's code (a build's environment, a run's files): it may
hold anything, so the walk opens every folder relative to its parent and follows no link, keeps
its own stack (folders nested thousands deep overflow a walk that recurses), gives up past a
depth, and holds one descriptor per level: a folder's listing is read, and closed, before its
sub-folders are walked (a listing open per level held two descriptors a level). What a walk
costs, and whether what it cannot read counts against anyone, is its caller's to decide."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class TooDeep(Exception):
    """Folders nested deeper than the walk's ``max_depth`` below the walked one."""


def walk(root: Path, *, max_depth: int, strict: bool = False) -> Iterator[tuple[int, str, os.stat_result]]:
    """Every entry below ``root`` as (its folder's descriptor, its name, its ``lstat``): a folder's
    entries as its listing gives them, then what is below each of its sub-folders (a folder is
    seen before anything in it). ``root`` is opened without following a link (an ``OSError``
    when it is not a folder); :class:`TooDeep` past ``max_depth`` levels below it. An entry or a
    folder removed meanwhile is skipped; one that cannot be opened, listed or looked at is skipped
    too, or with ``strict`` its ``OSError`` is raised (what cannot be read may hide anything). The
    descriptor stays valid until the walk leaves that folder."""
    stack: list[tuple[int, list[str]]] = [(os.open(root, DIR_FLAGS), [])]
    try:
        yield from _listing(*stack[-1], strict)
        while stack:
            parent, pending = stack[-1]
            if not pending:
                os.close(stack.pop()[0])
                continue
            name = pending.pop()
            if len(stack) > max_depth:
                raise TooDeep(f"folders nested deeper than {max_depth}")
            try:
                sub = os.open(name, DIR_FLAGS, dir_fd=parent)
            except FileNotFoundError:
                continue
            except OSError:
                if strict:
                    raise
                continue  # not opened: gone, or replaced by something that is not a folder
            stack.append((sub, []))
            yield from _listing(*stack[-1], strict)
    finally:
        while stack:
            os.close(stack.pop()[0])


def _listing(fd: int, folders: list[str], strict: bool) -> Iterator[tuple[int, str, os.stat_result]]:
    """The entries of the folder ``fd``; the names of its sub-folders go to ``folders``."""
    try:
        with os.scandir(fd) as entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                except OSError:
                    if strict:
                        raise
                    continue
                yield fd, entry.name, st
                if stat.S_ISDIR(st.st_mode):
                    folders.append(entry.name)
    except OSError:
        if strict:
            raise
