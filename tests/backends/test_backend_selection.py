"""Choosing the execution backend, and reporting which ones work here (``crewyard doctor``)."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest

from crewyard import sandboxuid
from crewyard.runner.backends import (
    BackendUnavailable,
    BwrapBackend,
    DockerBackend,
    ProcessBackend,
    _bwrap_server,
    doctor,
    select_backend,
)
from crewyard.runner.backends import bwrap as bwrap_backend
from crewyard.settings import load

NOWHERE = "unix:///nonexistent/engine.sock"


def test_doctor_reports_every_backend_and_why(docker_host: str, tmp_path: Path) -> None:
    report = {s.name: s for s in doctor(load(tmp_path, docker_host=docker_host))}

    assert list(report) == ["docker", "bwrap", "process"]
    assert report["docker"].usable and "Podman" in report["docker"].reason
    assert report["bwrap"].usable and "cgroup v1 memory/pids/cpu limits" in report["bwrap"].reason
    assert report["process"].usable and "NOT isolated" in report["process"].reason


def test_doctor_says_why_docker_is_unusable(tmp_path: Path) -> None:
    docker = doctor(load(tmp_path, docker_host=NOWHERE))[0]

    assert docker.name == "docker" and not docker.usable
    assert "does not answer" in docker.reason


def test_auto_prefers_docker_then_bwrap(docker_host: str, tmp_path: Path) -> None:
    assert isinstance(select_backend(load(tmp_path, docker_host=docker_host)), DockerBackend)
    assert isinstance(select_backend(load(tmp_path, docker_host=NOWHERE)), BwrapBackend)


def test_an_explicit_backend_is_taken_or_refused_at_start_up(docker_host: str, tmp_path: Path) -> None:
    assert isinstance(select_backend(load(tmp_path, backend="process")), ProcessBackend)
    assert isinstance(select_backend(load(tmp_path, backend="bwrap")), BwrapBackend)
    assert isinstance(
        select_backend(load(tmp_path, backend="docker", docker_host=docker_host)), DockerBackend
    )
    with pytest.raises(BackendUnavailable, match="backend 'docker' was chosen but"):
        select_backend(load(tmp_path, backend="docker", docker_host=NOWHERE))


def test_settings_reach_the_backend(docker_host: str, tmp_path: Path) -> None:
    backend = select_backend(load(tmp_path, docker_host=docker_host, artifact_max_file_bytes=1234))
    assert isinstance(backend, DockerBackend)
    assert backend.artifact_caps[0] == 1234


def test_auto_never_falls_back_to_the_unisolated_process_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # neither bwrap nor an engine to be found here
    with pytest.raises(BackendUnavailable, match="no isolating backend works here") as caught:
        select_backend(load(tmp_path, docker_host=NOWHERE))
    assert "--backend process" in str(caught.value)
    assert isinstance(select_backend(load(tmp_path, backend="process")), ProcessBackend)


def test_doctor_says_the_process_backend_is_only_ever_an_explicit_choice(tmp_path: Path) -> None:
    process = doctor(load(tmp_path, docker_host=NOWHERE))[2]
    assert "NOT isolated" in process.reason and "only when chosen explicitly" in process.reason


def _doctor_json(tmp_path: Path, **env: str) -> dict:
    import json
    import os
    import subprocess
    import sys

    environ = {**os.environ, "CREWYARD_DOCKER_HOST": NOWHERE, "CREWYARD_DATA_DIR": str(tmp_path), **env}
    done = subprocess.run(
        [sys.executable, "-m", "crewyard.cli", "doctor", "--json"],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
    )
    report: dict = json.loads(done.stdout)
    return report


def test_doctor_says_whether_node_can_run_javascript_crews(tmp_path: Path) -> None:
    old = tmp_path / "old-node"
    old.write_text("#!/bin/sh\necho v18.19.0\n")
    old.chmod(0o755)

    here = _doctor_json(tmp_path)["node"]
    too_old = _doctor_json(tmp_path, CREWYARD_NODE=str(old))["node"]

    assert here["usable"] and int(here["version"].split(".")[0]) >= 20 and "with npm" in here["reason"]
    assert not too_old["usable"] and too_old["version"] == "18.19.0"
    assert "langgraph-js crews need Node 20+" in too_old["reason"]


def test_trial_sandboxes_never_bind_the_hosts_whole_root(monkeypatch: pytest.MonkeyPatch) -> None:
    # A recursive bind of / takes every mount under it, and one that goes meanwhile (a test's
    # container, its overlay removed by the engine) failed the trial, and the runner with it:
    # "Can't bind mount /oldroot/ on /newroot/: ... No such file or directory".
    tried: list[list[str]] = []

    def trial(command: list[str], what: str) -> str | None:
        tried.append(command)
        return real_trial(command, what)

    real_trial = bwrap_backend.trial
    monkeypatch.setattr(bwrap_backend, "trial", trial)
    monkeypatch.setattr(_bwrap_server, "trial", trial)
    _bwrap_server.unavailable.cache_clear()
    try:
        assert bwrap_backend.probe() is None
        assert _bwrap_server.unavailable(shutil.which("bwrap") or "bwrap", sandboxuid.DEFAULT) is None
    finally:
        _bwrap_server.unavailable.cache_clear()
    assert len(tried) == 2
    for command in tried:
        pairs = list(itertools.pairwise(command))
        assert not any(flag.endswith("bind") and source == "/" for flag, source in pairs), command
