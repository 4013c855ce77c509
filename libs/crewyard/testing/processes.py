"""Processes as the tests see them from outside."""

from __future__ import annotations

import contextlib
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


def run_processes(run_id: str) -> list[int]:
    """Host pids of every process of a run, found by its environment (works for every backend:
    container and sandbox processes are visible in the host's /proc)."""
    needle = f"CREWYARD_RUN_ID={run_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
    return found


def bytes_read() -> int:
    """Bytes this process has read so far (``rchar`` of ``/proc/self/io``: every ``read`` and
    ``pread``, cached or not), to measure what a query reads of a file."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")
