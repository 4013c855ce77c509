"""A runner's id survives its restarts and is held by one live process at a time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from crewyard.runner.identity import IdentityInUse, RunnerIdentity

CLAIM = (
    "import os, sys, pathlib; from crewyard.runner.identity import RunnerIdentity;"
    "RunnerIdentity.claim(pathlib.Path(sys.argv[1]))"
)


def test_a_restarted_runner_has_its_predecessors_id(tmp_path: Path) -> None:
    first = RunnerIdentity.claim(tmp_path)
    first.release()
    second = RunnerIdentity.claim(tmp_path)
    second.release()
    assert first.runner_id == second.runner_id
    assert (tmp_path / "runner-id").read_text().strip() == first.runner_id
    assert RunnerIdentity.claim(tmp_path / "other").runner_id != first.runner_id


def test_a_configured_id_wins(tmp_path: Path) -> None:
    identity = RunnerIdentity.claim(tmp_path, "gpu-box-1")
    assert identity.runner_id == "gpu-box-1"
    identity.release()


def test_a_second_live_process_with_the_same_id_is_refused(tmp_path: Path) -> None:
    holder = RunnerIdentity.claim(tmp_path)
    try:
        with pytest.raises(IdentityInUse, match="in use by another runner process"):
            RunnerIdentity.claim(tmp_path)
        other = subprocess.run([sys.executable, "-c", CLAIM, str(tmp_path)], capture_output=True, text=True)
        assert other.returncode != 0 and "IdentityInUse" in other.stderr
    finally:
        holder.release()
    RunnerIdentity.claim(tmp_path).release()  # free again once the holder is gone


def test_a_killed_holder_frees_its_id(tmp_path: Path) -> None:
    holder = subprocess.run([sys.executable, "-c", CLAIM + "; os.kill(os.getpid(), 9)", str(tmp_path)])
    assert holder.returncode == -9  # it claimed the id, then died without releasing it
    RunnerIdentity.claim(tmp_path).release()
