"""``crewyard up`` on a data dir that a live platform holds, and ``projector rebuild``'s NATS URL
and interruption: the real commands, with the running platform stood in for by what it holds."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crewyard import datadir
from crewyard.runner.identity import RunnerIdentity


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def running_platform(tmp_path: Path) -> Iterator[Path]:
    """A data dir as a live ``crewyard up`` leaves it: its lock and runner id held, its URLs written."""
    data_dir = tmp_path.resolve() / "data"
    held = datadir.claim(data_dir)
    runner = RunnerIdentity.claim(data_dir)
    (data_dir / "api.url").write_text("http://127.0.0.1:8080\n")
    (data_dir / "nats.url").write_text("nats://127.0.0.1:4222\n")
    try:
        yield data_dir
    finally:
        runner.release()
        held.release()


def test_up_on_a_data_dir_in_use_says_so_before_printing_or_writing_anything(
    run_cli, running_platform: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("CREWYARD_SERVICES", "CREWYARD_NATS_PORT", "CREWYARD_RUNNER_ID", "CREWYARD_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)

    result = run_cli("up", "--data-dir", str(running_platform), "--port", str(_free_port()))

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"error: a crewyard platform is already running on the data dir {running_platform}"
        f" (process {os.getpid()}, API http://127.0.0.1:8080); stop it first, or start this one with"
        " another --data-dir\n"
    )
    assert (running_platform / "api.url").read_text() == "http://127.0.0.1:8080\n"
    assert (running_platform / "nats.url").read_text() == "nats://127.0.0.1:4222\n"


def test_up_beside_a_runner_on_the_same_data_dir_fails_before_the_banner(
    run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("CREWYARD_SERVICES", "CREWYARD_NATS_PORT", "CREWYARD_RUNNER_ID", "CREWYARD_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    data_dir = tmp_path.resolve()
    runner = RunnerIdentity.claim(data_dir)  # `crewyard service runner --data-dir D`
    try:
        result = run_cli("up", "--data-dir", str(data_dir), "--port", str(_free_port()))
    finally:
        runner.release()

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: runner id {runner.runner_id!r} is in use by another runner")
    assert not (data_dir / "api.url").exists() and not (data_dir / "nats.url").exists()


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_rebuild_uses_the_data_dirs_nats_and_an_interrupted_one_says_so(
    tmp_path: Path, signum: int, code: int
) -> None:
    nats_url = f"nats://127.0.0.1:{_free_port()}"  # nothing answers there: it waits
    (tmp_path / "nats.url").write_text(nats_url + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("CREWYARD_NATS_URL", "CREWYARD_DATA_DIR")}
    rebuild = subprocess.Popen(
        [sys.executable, "-m", "crewyard.cli", "projector", "rebuild", "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert rebuild.stderr is not None
        deadline, seen = time.monotonic() + 30, ""
        while f"waiting for NATS at {nats_url}" not in seen and time.monotonic() < deadline:
            seen += rebuild.stderr.readline()
        assert f"waiting for NATS at {nats_url}" in seen, seen
        rebuild.send_signal(signum)
        out, err = rebuild.communicate(timeout=30)
    finally:
        if rebuild.poll() is None:
            rebuild.kill()
            rebuild.wait()

    assert rebuild.returncode == code
    assert "rebuilt" not in out
    name = signal.Signals(signum).name
    assert f"error: the read model rebuild was interrupted ({name}) while waiting for NATS" in err
