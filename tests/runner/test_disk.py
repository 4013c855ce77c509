"""A run's files are watched while it runs: a crew that writes without end (each file under the
file-size limit) is stopped before it fills the runner's disk, and what it made is counted as
the disk holds it, following no link."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from crewyard.core.events import RunCompleted, RunFailed
from crewyard.runner import disk
from crewyard.runner.execution import Budget

if TYPE_CHECKING:
    from conftest import RunCrew

MiB = 1 << 20


def test_files_are_counted_as_the_disk_holds_them(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.bin").write_bytes(os.urandom(3 * MiB))
    with (tmp_path / "sparse.bin").open("wb") as f:  # a gigabyte that holds nothing
        f.truncate(1 << 30)
    assert disk.over(tmp_path, 4 * MiB) is None
    (tmp_path / "b.bin").write_bytes(os.urandom(2 * MiB))
    assert disk.over(tmp_path, 4 * MiB) == (
        "the run's files take more than 4 MiB, its disk limit (CREWYARD_RUN_MAX_DISK)"
    )


def test_links_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "big.bin").write_bytes(os.urandom(2 * MiB))
    run = tmp_path / "run"
    run.mkdir()
    (run / "to-folder").symlink_to(outside)
    (run / "to-file").symlink_to(outside / "big.bin")
    assert disk.over(run, MiB) is None
    assert disk.over(outside, MiB) is not None


def test_a_folder_swapped_for_a_link_is_not_read_through(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "artifacts").symlink_to(tmp_path / "elsewhere")
    why = disk.over(tmp_path / "artifacts", MiB)
    assert why is not None and why.startswith("the run's artifacts folder cannot be read ("), why


def test_too_many_entries_or_levels_count_as_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(disk, "MAX_ENTRIES", 50)
    monkeypatch.setattr(disk, "MAX_DEPTH", 5)
    for i in range(40):
        (tmp_path / f"f{i}").touch()
    assert disk.over(tmp_path, MiB) is None
    for i in range(40, 60):
        (tmp_path / f"f{i}").touch()
    assert disk.over(tmp_path, MiB) == "the run made more than 50 files and folders"
    deep = tmp_path / "deep"
    for f in tmp_path.glob("f*"):
        f.unlink()
    (deep / "1" / "2" / "3" / "4" / "5").mkdir(parents=True)
    assert disk.over(deep, MiB) is None
    (deep / "1" / "2" / "3" / "4" / "5" / "6").mkdir()
    assert disk.over(deep, MiB) == "the run nested folders deeper than 5"


async def test_a_crew_that_writes_without_end_is_stopped_at_its_disk_limit(run_crew: RunCrew) -> None:
    source = """
    import os, time

    def run(inputs):
        for i in range(400):
            with open(f"chunk-{i:03d}.bin", "wb") as f:
                f.write(os.urandom(1 << 20))
            time.sleep(0.02)
        return "never stopped"
    """
    ran = await run_crew(source, budget=Budget(max_disk=24 * MiB))

    assert isinstance(ran.payload, RunFailed), ran.payload
    assert ran.payload.reason == "limit"
    assert ran.payload.error_message == (
        "the run's files take more than 24 MiB, its disk limit (CREWYARD_RUN_MAX_DISK)"
    )


async def test_a_crew_within_its_disk_limit_completes(run_crew: RunCrew) -> None:
    source = """
    import os, time

    def run(inputs):
        for i in range(4):
            with open(f"chunk-{i}.bin", "wb") as f:
                f.write(os.urandom(1 << 20))
        time.sleep(2.5)  # a watch has looked meanwhile
        return "done"
    """
    ran = await run_crew(source, budget=Budget(max_disk=24 * MiB))

    assert isinstance(ran.payload, RunCompleted), ran.payload


class _Listing:
    """``os.scandir`` of a folder descriptor, counting the listings open at once; ``refuse``:
    their entries cannot be looked at."""

    open_now = most_open = 0

    def __init__(self, fd: int, *, refuse: bool = False) -> None:
        self.inner, self.refuse = _SCANDIR(fd), refuse

    def __enter__(self) -> Any:
        _Listing.open_now += 1
        _Listing.most_open = max(_Listing.most_open, _Listing.open_now)
        entries = self.inner.__enter__()
        return (_Refusing(e) for e in entries) if self.refuse else entries

    def __exit__(self, *exc: object) -> None:
        _Listing.open_now -= 1
        self.inner.__exit__(*exc)


_SCANDIR = os.scandir


class _Refusing:
    """A listing whose entries cannot be looked at (a folder readable but not searchable by the
    runner: what a crew running as the runner's own user can make with ``chmod 0444``)."""

    def __init__(self, real: os.DirEntry[str]) -> None:
        self.name = real.name

    def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
        raise PermissionError(13, "Permission denied")


def test_what_the_runner_cannot_look_at_counts_as_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "hidden").mkdir()
    (tmp_path / "hidden" / "big.bin").write_bytes(b"x")
    monkeypatch.setattr(os, "scandir", lambda fd: _Listing(fd, refuse=True))
    assert disk.over(tmp_path, MiB) == "the run made a folder the runner cannot read (Permission denied)"


def test_a_runner_short_of_descriptors_skips_a_round_and_blames_no_crew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "sub").mkdir()
    real = os.open

    def short(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if kwargs.get("dir_fd") is not None:
            raise OSError(errno.EMFILE, "Too many open files")
        return real(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", short)
    with pytest.raises(OSError) as no_answer:
        disk.over(tmp_path, MiB)
    assert no_answer.value.errno == errno.EMFILE


def test_a_walk_holds_one_descriptor_per_level(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deep = tmp_path
    for level in range(20):
        deep = deep / f"level{level}"
        for sibling in range(3):
            (deep.parent / f"file{sibling}").write_bytes(b"x")
        deep.mkdir()
    held, most = 0, 0
    real_open, real_close = os.open, os.close

    def opened(*args: Any, **kwargs: Any) -> int:
        nonlocal held, most
        fd = real_open(*args, **kwargs)
        held += 1
        most = max(most, held)
        return fd

    def closed(fd: int) -> None:
        nonlocal held
        held -= 1
        real_close(fd)

    monkeypatch.setattr(os, "open", opened)
    monkeypatch.setattr(os, "close", closed)
    monkeypatch.setattr(_Listing, "most_open", 0)
    monkeypatch.setattr(os, "scandir", _Listing)  # each open listing holds a descriptor too
    assert disk.over(tmp_path, MiB) is None
    assert held == 0 and most == 21  # the root and one per level
    assert _Listing.most_open == 1  # a folder's listing is closed before its sub-folders are walked


#: Writes 3 MiB into gone.bin, opens it twice, unlinks it, says so, closes it at its first line
#: of stdin, says so, and lives on until its stdin ends.
HOLDER = """
import os, sys
with open("gone.bin", "wb") as f, open("gone.bin", "rb") as again:
    f.write(os.urandom(3 << 20))
    f.flush()
    os.unlink("gone.bin")
    print("held", flush=True)
    sys.stdin.readline()
print("closed", flush=True)
sys.stdin.read()
"""


def test_files_unlinked_but_kept_open_are_counted_once_however_often_open(tmp_path: Path) -> None:
    (tmp_path / "named.bin").write_bytes(os.urandom(MiB // 2))
    pipe = subprocess.PIPE
    with subprocess.Popen([sys.executable, "-c", HOLDER], cwd=tmp_path, stdin=pipe, stdout=pipe) as holder:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline() == b"held\n"
        it = {holder.pid}
        device = os.lstat(tmp_path).st_dev
        held, files = disk.unlinked(it, device)
        assert files == 1 and 3 * MiB <= held < 4 * MiB, (held, files)
        assert disk.unlinked(it, device + 1) == (0, 0)  # another disk's
        assert disk.over(tmp_path, 2 * MiB) is None  # a walk alone does not see it
        assert disk.over(tmp_path, 2 * MiB, it) == (
            "the run's files take more than 2 MiB, its disk limit (CREWYARD_RUN_MAX_DISK),"
            " 1 of them deleted but kept open"
        )
        assert disk.over(tmp_path, 4 * MiB, it) is None
        (tmp_path / "more.bin").write_bytes(os.urandom(MiB))  # 3 + 0.5 + 1 MiB: the sum counts
        assert disk.over(tmp_path, 4 * MiB, it) == (
            "the run's files take more than 4 MiB, its disk limit (CREWYARD_RUN_MAX_DISK),"
            " 1 of them deleted but kept open"
        )
        holder.stdin.write(b"close\n")
        holder.stdin.flush()
        assert holder.stdout.readline() == b"closed\n"
        assert disk.unlinked(it, device) == (0, 0)  # closed: the disk has it back
        assert disk.over(tmp_path, 2 * MiB, it) is None
        holder.stdin.close()


def test_processes_the_runner_may_not_look_at_are_skipped_not_held_against_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A zombie's /proc/PID/fd is root's; a non-dumpable process's is too, for a runner that is
    # not root: a crew that merely has a child it has not reaped yet must not be stopped.
    real = os.scandir

    def refused(path: Any = ".") -> Any:
        if str(path).startswith("/proc/"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", refused)
    (tmp_path / "small.bin").write_bytes(b"x" * 1000)
    assert disk.unlinked({os.getpid()}, os.lstat(tmp_path).st_dev) == (0, 0)
    assert disk.over(tmp_path, MiB, {os.getpid()}) is None


def test_more_open_descriptors_than_looked_at_count_as_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(disk, "MAX_OPEN", 3)
    opened = [os.open(tmp_path, os.O_RDONLY) for _ in range(4)]
    try:
        assert disk.over(tmp_path, MiB, {os.getpid()}) == "the run holds more than 3 descriptors open"
    finally:
        for fd in opened:
            os.close(fd)


async def test_a_crew_that_fills_the_disk_with_unlinked_files_is_stopped(run_crew: RunCrew) -> None:
    source = """
    import os, time

    def run(inputs):
        held = []
        for i in range(40):
            f = open(f"hidden-{i}.bin", "wb")
            f.write(os.urandom(1 << 20))
            f.flush()
            os.unlink(f"hidden-{i}.bin")
            held.append(f)
        time.sleep(30)
        return "never stopped"
    """
    ran = await run_crew(source, budget=Budget(max_disk=24 * MiB))

    assert isinstance(ran.payload, RunFailed), ran.payload
    assert ran.payload.reason == "limit"
    # A round may come while it still writes: at least 25 of its 40 files are gone by then.
    why = ran.payload.error_message or ""
    prefix = "the run's files take more than 24 MiB, its disk limit (CREWYARD_RUN_MAX_DISK), "
    assert why.startswith(prefix) and why.endswith(" of them deleted but kept open"), why
    assert 25 <= int(why.removeprefix(prefix).split()[0]) <= 40, why
