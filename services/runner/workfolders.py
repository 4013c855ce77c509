"""Each runner process works in a folder of its own under the data dir's ``work/``, named by its
owner tag (``cgroups.owner_tag``: pid namespace, pid and start time), and a runner that starts
removes the folders of runner processes that are provably gone.

A run's folder (its artifacts before they are stored, a sandbox's staging), a warm sandbox's and
a fork server's (with its slots) are removed by the runner when they end — but not when the
runner is killed: its sandboxes are reaped at once (``crewyard.reaper``), its folders stay until
the next runner on this machine starts. Ownership is by process, as for control groups, so
runners sharing a data dir never touch each other's folders, and a folder whose owner lives in
another pid namespace is left alone (its owner cannot be looked up).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from crewyard import cgroups


def own(work_root: Path) -> Path:
    """This process's work folder (created)."""
    folder = work_root / cgroups.owner_tag()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def sweep(work_root: Path) -> int:
    """Remove the work folders of runner processes that are gone; returns how many."""
    removed = 0
    try:
        entries = list(work_root.iterdir())
    except FileNotFoundError:
        return 0
    for entry in entries:
        tag = cgroups.owner_of(f"{entry.name}@")
        if tag is None or not entry.is_dir() or entry.is_symlink() or not cgroups.owner_gone(tag):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed += not entry.exists()
    return removed
