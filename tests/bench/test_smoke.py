"""The benchmark harness, once in ``--quick`` mode: every figure is produced with sane numbers and
the JSON file is written. Timing targets are never asserted here (the machines are noisy)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

FIGURE_NUMBERS = {"1", "2", "3", "4", "5", "6", "7", "8", "9", "10"}


@pytest.mark.timeout(960)
def test_quick_run_produces_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "crewyard.bench", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,  # a minute or two when the machine is quiet; far longer beside other suites
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    doc = json.loads(out.read_text())
    figures = doc["figures"]
    assert {f["key"].split("-")[0].rstrip("abcdefgh") for f in figures} == FIGURE_NUMBERS
    assert "5b-process" in {f["key"] for f in figures}  # the process backend is always measured
    for f in figures:
        where = f"figure {f['key']}: {f}"
        assert f["error"] is None, where
        assert f["samples"] > 0, where
        assert f["value"] > 0, where
        assert 0 < f["min"] <= f["median"] <= f["max"], where
        assert f["unit"] and f["title"], where
        assert f["met"] in (True, False, None), where
        if f["baseline"] is not None:
            assert f["baseline"] > 0 and f["ratio"] > 0, where
            assert f["baseline_label"], where
    assert doc["meta"]["mode"] == "quick" and doc["meta"]["duration_s"] > 0
    # Figure 3 also measures its floor: the same clients on a bare one-process fan-out.
    fanout = next(f for f in figures if f["key"] == "3")["extra"]
    assert fanout["floor_p99_ms"] > 0 and fanout["floor_clients_dropped"] == 0, fanout
    over_floor = next(f for f in figures if f["key"] == "3b")
    assert over_floor["baseline"] == fanout["floor_p99_ms"], over_floor
    # --quick never installs figure 10's peer (LangGraph's server): crewyard's side is measured
    # alone, and the report says why the peer is missing instead of leaving it out silently.
    peer = [f for f in figures if f["key"].startswith("10")]
    assert {f["key"] for f in peer} == {f"10{x}-process" for x in "abcde"}
    assert all(f["baseline"] is None and "peer not measured" in f["detail"] for f in peer)
    assert any("LangGraph's server is not installed" in note for note in doc["meta"]["notes"])
    assert "figure" in proc.stdout and "5b-process" in proc.stdout  # the table went to stdout


def test_unknown_figure_is_refused_before_anything_starts() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "crewyard.bench", "--only", "append,nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "nope" in proc.stderr
