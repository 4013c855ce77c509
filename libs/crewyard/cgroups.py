"""A control group per sandbox (a run's or a build's): the limits rlimits cannot give (memory,
process count, CPU share).

Why not rlimits alone (measured on these machines, root, bwrap 0.8, kernel 6.x):
- ``RLIMIT_NPROC`` does not stop a fork bomb: bwrap maps the sandbox's uid 1000 to the caller's
  uid 0, and the kernel never applies RLIMIT_NPROC to processes whose real user is root
  (2000 forks went through with ``--nproc=64``). A ``pids`` cgroup stops it at ``pids.max``.
- ``RLIMIT_AS`` caps address space, not memory, and turns a hog into a ``MemoryError`` somewhere;
  a ``memory`` cgroup gives a real limit, the kernel's OOM kill, and a counter that tells the
  runner the run died of it (``oom_kill`` in ``memory.oom_control`` / ``memory.events``).

Both cgroup v1 (the hybrid layout of these machines: one folder per controller) and v2 (one
unified tree) are handled; the folders are ``crewyard/<name>`` under each hierarchy. Without write
access to cgroups (not root, or a container without delegation) :func:`create` returns None and
the sandbox falls back to rlimits, which :func:`describe` says so ``crewyard doctor`` shows it.

**Owners.** A group is named ``<owner>@<runner id>@<run id>`` (a build's ``<owner>@build@<build>``);
the owner tag is the creating process's pid namespace, pid and start time (:func:`owner_tag`), so
anyone can tell whether the owner is still alive — a pid alone may have been reused — and
:func:`sweep` removes (killing what is inside) only groups whose owner is provably gone: never
another live runner's or builder's, whatever its data dir. Groups from another pid namespace are
never touched (their owner cannot be looked up).

When a runner or builder dies, its groups are killed and removed by its reaper
(:mod:`crewyard.reaper`); what a reaper that died too leaves is removed by the next :func:`sweep`.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PARENT = "crewyard"
_V1_CONTROLLERS = ("memory", "pids", "cpu")
_NAME_RE = re.compile(r"[^A-Za-z0-9_.-]")
_GROUP_NAME_RE = re.compile(r"[A-Za-z0-9_.@-]{1,250}")
_OWNER_RE = re.compile(r"(\d+)-(\d+)-(\d+)")
CPU_PERIOD_US = 100_000


def safe_name(value: str, limit: int = 120) -> str:
    """``value`` as a part of a group name; ``@`` is left free to join owner, runner and run ids."""
    return _NAME_RE.sub("_", value)[:limit] or "_"


def _pid_namespace() -> str:
    return re.sub(r"\D", "", os.readlink("/proc/self/ns/pid"))


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of ``/proc/PID/stat``)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # after the command name, which may hold spaces


def owner_tag(pid: int | None = None) -> str:
    """``<pid namespace>-<pid>-<start time>``: names one process for as long as the machine runs."""
    pid = pid or os.getpid()
    return f"{_pid_namespace()}-{pid}-{_start_time(pid)}"


def owner_gone(tag: str) -> bool:
    """True only when the process ``tag`` names has provably ended (not for another namespace)."""
    match = _OWNER_RE.fullmatch(tag)
    if match is None or match.group(1) != _pid_namespace():
        return False
    return _start_time(int(match.group(2))) != match.group(3)


def group_name(owner: str, runner_id: str, run_id: str) -> str:
    return f"{owner}@{safe_name(runner_id, 80)}@{safe_name(run_id)}"


def owner_of(name: str) -> str | None:
    """The owner tag in a group's name, or None for a name this module did not make."""
    owner = name.split("@", 1)[0]
    return owner if "@" in name and _OWNER_RE.fullmatch(owner) else None


def _version() -> int | None:
    if (ROOT / "cgroup.controllers").exists():
        return 2
    if all((ROOT / c / "cgroup.procs").exists() for c in ("memory", "pids")):
        return 1
    return None


def _write(path: Path, value: str) -> None:
    path.write_text(value)


class Cgroup:
    """One sandbox's control group (one folder per controller on v1, one folder on v2)."""

    def __init__(self, version: int, dirs: list[Path]) -> None:
        self.version = version
        self.dirs = dirs

    def procs_files(self) -> list[str]:
        """Paths the sandbox's first process writes its pid to (before it execs bwrap)."""
        return [str(d / "cgroup.procs") for d in self.dirs]

    def pids(self) -> set[int]:
        found: set[int] = set()
        for d in self.dirs:
            with contextlib.suppress(OSError):
                found.update(int(p) for p in (d / "cgroup.procs").read_text().split())
        return found

    def oom_killed(self) -> bool:
        """Did the kernel kill a process of this group for lack of memory?"""
        events: Path | None
        if self.version == 2:
            events = self.dirs[0] / "memory.events"
        else:
            events = next(
                (d / "memory.oom_control" for d in self.dirs if d.is_relative_to(ROOT / "memory")), None
            )
            if events is None:
                return False
        try:
            text = events.read_text()
        except OSError:
            return False
        match = re.search(r"^oom_kill (\d+)$", text, re.MULTILINE)
        return bool(match and int(match.group(1)) > 0)

    def pids_limit_hit(self) -> bool:
        """Was a fork or clone refused because the group was at ``pids.max``?"""
        events = next((d / "pids.events" for d in self.dirs if (d / "pids.events").exists()), None)
        try:
            text = events.read_text() if events else ""
        except OSError:
            return False
        match = re.search(r"^max (\d+)$", text, re.MULTILINE)
        return bool(match and int(match.group(1)) > 0)

    def memory_used(self) -> int | None:
        """What the group holds in memory, less file cache the kernel could drop (``None``
        without a memory controller)."""
        if self.version == 2:
            return _memory_in(self.dirs[0], 2) if self.dirs else None
        memory = next((d for d in self.dirs if d.parent.parent.name == "memory"), None)
        return _memory_in(memory, 1) if memory is not None else None

    def kill_all(self) -> None:
        if not self.dirs:
            return
        kill_file = self.dirs[0] / "cgroup.kill"
        if self.version == 2 and kill_file.exists():
            with contextlib.suppress(OSError):
                _write(kill_file, "1")
            return
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def remove(self, timeout_s: float = 2.0) -> None:
        """Kill what is left and delete the folders (a folder can only go once it is empty)."""
        deadline = time.monotonic() + timeout_s
        for d in self.dirs:
            while d.exists():
                try:
                    d.rmdir()
                except OSError:
                    if time.monotonic() > deadline:
                        break
                    self.kill_all()
                    time.sleep(0.02)


def _memory_in(folder: Path, version: int) -> int | None:
    """A memory group's usage less its inactive file cache (as ``docker stats`` counts it)."""
    usage_file, inactive = ("memory.current", "inactive_file") if version == 2 else (
        "memory.usage_in_bytes", "total_inactive_file")  # fmt: skip
    try:
        usage = int((folder / usage_file).read_text())
        stat = (folder / "memory.stat").read_text()
    except (OSError, ValueError):
        return None
    match = re.search(rf"^{inactive} (\d+)$", stat, re.MULTILINE)
    return max(usage - (int(match.group(1)) if match else 0), 0)


def _group_of(pid: int, controller: str) -> tuple[Path, int] | None:
    """The folder (and cgroup version) of the group process ``pid`` is in: ``controller``'s on
    v1, the one group on v2; None when it cannot be read."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return ROOT / controller / path.lstrip("/"), 1
        if controllers == "" and _version() == 2:
            return ROOT / path.lstrip("/"), 2
    return None


def memory_of_process(pid: int) -> int | None:
    """The memory of the control group process ``pid`` is in (e.g. a container's), as
    :meth:`Cgroup.memory_used` counts it; None when it cannot be read."""
    group = _group_of(pid, "memory")
    return _memory_in(*group) if group is not None else None


def processes_of_group_of(pid: int, named: str) -> set[int] | None:
    """The processes of the control group process ``pid`` is in and of the groups below it, when
    the group's path has ``named`` in it (e.g. a container's id: its engine made the group — a
    pid of another namespace would name some other group); by the pids controller's on v1; None
    when it cannot be read."""
    group = _group_of(pid, "pids")
    if group is None or named not in str(group[0]):
        return None
    found: set[int] = set()
    try:
        for folder, _dirs, names in os.walk(group[0]):
            if "cgroup.procs" in names:
                found.update(int(p) for p in Path(folder, "cgroup.procs").read_text().split())
    except (OSError, ValueError):
        return None
    return found


def descendants(pid: int, most: int = 100_000) -> set[int]:
    """``pid`` and the processes it started, and theirs, as ``/proc/PID/task/TID/children`` name
    them (at most ``most``). Best effort: a process whose parent ended was taken by another (init,
    a subreaper) and is no longer among them — what a control group is for."""
    found, pending = {pid}, [pid]
    while pending and len(found) < most:
        parent = pending.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                children = Path(f"/proc/{parent}/task/{task}/children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in found:
                    found.add(child)
                    pending.append(child)
    return found


def _v1_dir(controller: str, name: str) -> Path:
    return ROOT / controller / PARENT / name


def create(name: str, *, memory_bytes: int | None, pids: int | None, cpus: float | None) -> Cgroup | None:
    """A new group with these limits, or None when this host does not let us make one."""
    if not _GROUP_NAME_RE.fullmatch(name):
        raise ValueError(f"not a control group name: {name!r}")
    version = _version()
    try:
        if version == 1:
            return _create_v1(name, memory_bytes, pids, cpus)
        if version == 2:
            return _create_v2(name, memory_bytes, pids, cpus)
    except OSError:
        return None
    return None


def _create_v1(name: str, memory_bytes: int | None, pids: int | None, cpus: float | None) -> Cgroup:
    dirs: list[Path] = []
    try:
        for controller in _V1_CONTROLLERS:
            if not (ROOT / controller / "cgroup.procs").exists():
                continue  # e.g. no cpu hierarchy mounted: that limit is simply not applied
            d = _v1_dir(controller, name)
            d.mkdir(parents=True, exist_ok=True)
            dirs.append(d)
            if controller == "memory" and memory_bytes:
                _write(d / "memory.limit_in_bytes", str(memory_bytes))
                if (d / "memory.memsw.limit_in_bytes").exists():  # no escaping into swap
                    _write(d / "memory.memsw.limit_in_bytes", str(memory_bytes))
            elif controller == "pids" and pids:
                _write(d / "pids.max", str(pids))
            elif controller == "cpu" and cpus:
                _write(d / "cpu.cfs_period_us", str(CPU_PERIOD_US))
                _write(d / "cpu.cfs_quota_us", str(max(1000, int(cpus * CPU_PERIOD_US))))
    except OSError:
        Cgroup(1, dirs).remove()
        raise
    return Cgroup(1, dirs)


def _create_v2(name: str, memory_bytes: int | None, pids: int | None, cpus: float | None) -> Cgroup:
    parent = ROOT / PARENT
    parent.mkdir(exist_ok=True)
    wanted = {"memory", "pids", "cpu"}
    available = set((ROOT / "cgroup.subtree_control").read_text().split())
    missing = wanted & set((ROOT / "cgroup.controllers").read_text().split()) - available
    if missing:  # the root group is exempt from "no internal processes", so this is allowed
        _write(ROOT / "cgroup.subtree_control", " ".join(f"+{c}" for c in sorted(missing)))
    enabled = set((parent / "cgroup.subtree_control").read_text().split())
    todo = wanted & set((parent / "cgroup.controllers").read_text().split()) - enabled
    if todo:
        _write(parent / "cgroup.subtree_control", " ".join(f"+{c}" for c in sorted(todo)))
    d = parent / name
    d.mkdir(exist_ok=True)
    group = Cgroup(2, [d])
    try:
        if memory_bytes:
            _write(d / "memory.max", str(memory_bytes))
            with contextlib.suppress(FileNotFoundError):
                _write(d / "memory.swap.max", "0")
        if pids:
            _write(d / "pids.max", str(pids))
        if cpus:
            _write(d / "cpu.max", f"{max(1000, int(cpus * CPU_PERIOD_US))} {CPU_PERIOD_US}")
    except OSError:
        group.remove()
        raise
    return group


def of_process(pid: int) -> Cgroup | None:
    """The memory and pids groups process ``pid`` is in (e.g. a container's, made by its engine),
    to read their counters; None when it is gone or the layout is unknown."""
    version = _version()
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return None
    dirs: list[Path] = []
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        where = path.lstrip("/")
        if version == 2 and line.startswith("0::"):
            return Cgroup(2, [ROOT / where])
        if version == 1:
            dirs += [ROOT / c / where for c in ("memory", "pids") if c in controllers.split(",")]
    return Cgroup(1, dirs) if version == 1 and dirs else None


def groups(select: Callable[[str], bool]) -> dict[str, Cgroup]:
    """Existing groups (by name) whose name ``select`` picks."""
    version = _version()
    if version is None:
        return {}
    bases = [ROOT / PARENT] if version == 2 else [ROOT / c / PARENT for c in _V1_CONTROLLERS]
    names: set[str] = set()
    for base in bases:
        with contextlib.suppress(OSError):
            names.update(p.name for p in base.iterdir() if p.is_dir() and select(p.name))
    if version == 2:
        return {n: Cgroup(2, [ROOT / PARENT / n]) for n in sorted(names)}
    found = {n: Cgroup(1, [d for c in _V1_CONTROLLERS if (d := _v1_dir(c, n)).is_dir()]) for n in names}
    return {n: g for n, g in sorted(found.items()) if g.dirs}


def sweep(owner: str | None = None) -> int:
    """Kill and remove the groups of ``owner`` (None: of every owner that is provably gone).

    Returns how many of them still held processes: sandboxes that had outlived their runner.
    """

    def select(name: str) -> bool:
        tag = owner_of(name)
        return tag is not None and (tag == owner if owner else owner_gone(tag))

    alive = 0
    for group in groups(select).values():
        if group.pids():
            alive += 1
        group.remove(timeout_s=10.0)
    return alive


def describe() -> str:
    """One line for ``crewyard doctor``: can sandboxes get memory/pids limits here?"""
    probe = create(f"probe-{os.getpid()}", memory_bytes=64 * 1024 * 1024, pids=16, cpus=None)
    if probe is None:
        version = _version()
        where = "no writable cgroup hierarchy" if version else "no cgroup hierarchy found"
        return f"rlimits only ({where}): memory is an address-space cap and fork bombs are not contained"
    probe.remove()
    return f"cgroup v{probe.version} memory/pids/cpu limits"
