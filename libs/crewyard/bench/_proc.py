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


def tree_cpu_seconds(root: int) -> float:
    """CPU time of ``root``'s tree: every live process's own, plus that of the children each has
    already waited for (a finished sandbox's CPU lands in its parent's ``cutime``/``cstime``)."""
    total = 0
    for pid in tree(root):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = _stat_fields(pid)
            total += sum(int(f) for f in fields[11:15])
    return total / _TICK


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
