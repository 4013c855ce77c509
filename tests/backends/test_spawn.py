"""``crewyard.spawn``: what a sandbox's first process needed ``preexec_fn`` for, done by helpers
it ``exec``\\ s (joining control groups is covered with real sandboxes in test_bwrap_sandbox.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from crewyard import spawn
from crewyard.testing.processes import alive


def _limits(text: str) -> dict[str, str]:
    """``/proc/<pid>/limits`` as name → soft limit."""
    rows = {}
    for line in text.splitlines()[1:]:
        name, soft = line[:26].strip(), line[26:47].strip()
        rows[name] = soft
    return rows


def test_the_command_gets_its_limits_in_its_own_process() -> None:
    argv = spawn.confined(
        ["/bin/cat", "/proc/self/limits"],
        parent_pid=os.getpid(),
        limits={"core": 0, "fsize": 1_048_576, "cpu": 77, "as": 8 << 30},
    )
    out = subprocess.run(argv, capture_output=True, text=True, check=True, start_new_session=True)
    limits = _limits(out.stdout)
    assert limits["Max core file size"] == "0"
    assert limits["Max file size"] == "1048576"
    assert limits["Max cpu time"] == "77"
    assert limits["Max address space"] == str(8 << 30)


def test_a_command_whose_spawner_is_gone_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    # A parent pid that is not ours: as if the runner died between spawn and exec.
    argv = spawn.confined(["/usr/bin/touch", str(marker)], parent_pid=os.getpid() + 1_000_000)
    proc = subprocess.run(argv, capture_output=True, check=False)
    assert proc.returncode == 1
    assert not marker.exists()


def test_a_control_group_that_cannot_be_joined_stops_the_start(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    missing = tmp_path / "no-such-group" / "cgroup.procs"
    argv = spawn.confined(
        ["/usr/bin/touch", str(marker)], cgroup_procs=[str(missing)], parent_pid=os.getpid()
    )
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert proc.returncode == 126
    assert "cannot join the control group" in proc.stderr
    assert not marker.exists()


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except FileNotFoundError:
        return ""


def test_a_command_that_dies_with_its_parent_goes_when_the_parent_is_killed() -> None:
    # The parent spawns the command and prints its pid, then waits to be killed.
    parent_code = (
        "import os, subprocess, sys, time\n"
        "from crewyard import spawn\n"
        "argv = spawn.confined(['/bin/sleep', '300'], parent_pid=os.getpid(), die_with_parent=True)\n"
        "p = subprocess.Popen(argv, start_new_session=True)\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(300)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        deadline = time.monotonic() + 60
        while _command(child) != "sleep":  # the helpers exec'd it in the same process
            assert time.monotonic() < deadline, "the command never started"
            time.sleep(0.05)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 60
        while alive(child):
            assert time.monotonic() < deadline, "the command outlived its parent"
            time.sleep(0.05)
    finally:
        parent.kill()
        parent.wait()
