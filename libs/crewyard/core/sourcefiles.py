"""The files of a crew folder that detection reads: a bounded walk, shallow folders first.

Only reads the folder's listing: folders that are links, hidden or named in ``skip`` are not
entered, and the walk stops once it has ``limit`` files, so a huge folder costs little.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def walk(root: Path, skip: frozenset[str], wanted: Callable[[Path], bool], limit: int) -> list[Path]:
    """Files below ``root`` that ``wanted`` keeps (in the order found; callers rank them)."""
    found: list[Path] = []
    stack = [root]
    while stack and len(found) < limit:
        folder = stack.pop()
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            continue
        for entry in entries:
            try:  # an entry that cannot be looked at (no permission, /proc's) is not the crew's
                if entry.is_dir() and not entry.is_symlink():
                    if entry.name not in skip and not entry.name.startswith("."):
                        stack.append(entry)
                elif wanted(entry) and entry.is_file():
                    found.append(entry)
            except OSError:
                continue
    return found
