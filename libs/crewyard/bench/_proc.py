"""CPU time and memory of processes, read from /proc (Linux only, like the platform's backends)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/stat").read_text()
    # The command name is in parentheses and may itself contain spaces or ')'.
    return raw[raw.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (its own threads, not its children)."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / _TICK


class TreeCpu:
    """CPU time a process tree spends over a window, sampled from /proc every ``interval``.

    Why sampled, not read once before and once after: a run's sandbox starts and ends inside the
    window, and a bwrap sandbox's CPU never reaches its parent's ``cutime`` (the pid namespace's
    init is not reaped by bwrap), so it must be seen while it lives. Each process (pid and start
    time) counts from its first sample, or from birth when it started inside the window, to its
    last; what it spends after its last sample (at most one interval) is missed.
    """

    def __init__(self, root: int) -> None:
        self.root = root
        self._first: dict[tuple[int, str], int] = {}
        self._last: dict[tuple[int, str], int] = {}
        self._baseline: set[tuple[int, str]] = set()

    def sample(self) -> None:
        for pid in tree(self.root):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = _stat_fields(pid)
                key = (pid, fields[19])  # field 22, start time: a reused pid is another process
                own = int(fields[11]) + int(fields[12])
                self._first.setdefault(key, own)
                self._last[key] = own
        if not self._baseline:
            self._baseline = set(self._first)

    def seconds(self) -> float:
        ticks = sum(
            last - (self._first[key] if key in self._baseline else 0) for key, last in self._last.items()
        )
        return ticks / _TICK


def tree(root: int) -> list[int]:
    """``root`` and every process descended from it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            children.setdefault(int(_stat_fields(int(entry.name))[1]), []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE


def pss_bytes(pid: int) -> int:
    """Proportional set size: shared pages split between their users, so a tree's sum is honest."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return 0


def tree_memory(root: int) -> tuple[int, int, list[str]]:
    """(RSS sum, PSS sum, process names) over the tree rooted at ``root``."""
    rss = pss = 0
    names: list[str] = []
    for pid in tree(root):
        with contextlib.suppress(OSError):
            rss += rss_bytes(pid)
            pss += pss_bytes(pid)
            names.append(Path(f"/proc/{pid}/comm").read_text().strip())
    return rss, pss, names
