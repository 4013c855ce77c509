"""Processes as the tests see them from outside."""

from __future__ import annotations

from pathlib import Path


def alive(pid: int | None) -> bool:
    """Does ``pid`` name a process that has not ended (a zombie has ended: only its exit code is
    left for its parent to collect)?"""
    if pid is None:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")
