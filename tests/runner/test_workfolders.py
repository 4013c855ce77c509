"""A runner process works in a folder of its own; the folders of runner processes that are gone
are removed by the next runner, those of live ones never."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from crewyard import cgroups
from crewyard.runner.workfolders import own, sweep


def _tag_of_a_process_that_ended() -> str:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        tag = cgroups.owner_tag(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    return tag


def test_the_folders_of_gone_runners_are_removed_and_no_others(tmp_path: Path):
    root = tmp_path / "work"
    mine = own(root)
    assert mine.parent == root and mine.name == cgroups.owner_tag(os.getpid())
    (mine / "run_live" / "artifacts").mkdir(parents=True)

    gone = root / _tag_of_a_process_that_ended()
    slots = gone / "server_x-slots" / "slot"
    slots.mkdir(parents=True)
    slots.chmod(0o700)
    (gone / "run_old" / "artifacts").mkdir(parents=True)
    (gone / "run_old" / "artifacts" / "report.md").write_text("left behind")
    elsewhere = root / "1-2-3"  # another pid namespace: its owner cannot be looked up
    elsewhere.mkdir()
    stray = root / "notes"  # not a runner's folder
    stray.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / f"{cgroups.owner_tag(os.getpid()).split('-')[0]}-999999-1").symlink_to(outside)

    assert sweep(root) == 1
    assert not gone.exists()
    assert (mine / "run_live" / "artifacts").is_dir()
    assert elsewhere.is_dir() and stray.is_dir() and outside.is_dir()
    assert sweep(root) == 0


def test_a_missing_work_folder_is_nothing_to_sweep(tmp_path: Path):
    assert sweep(tmp_path / "none") == 0
