"""Other users of the machine read nothing of the platform's: the data dir is 0700, the read model
(every input and output), the key, caches and logs are private — also for an install that an
older version left open, which is tightened at start."""

from __future__ import annotations

import stat
from pathlib import Path

from crewyard.testing.api import EXAMPLES, deploy, wait_run
from crewyard.testing.platform import PlatformProcess
from crewyard.workspace import SOURCES


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _assert_private(data_dir: Path) -> None:
    assert _mode(data_dir) == 0o700
    for name in ("cache", "work", "tmp", "nats"):
        assert _mode(data_dir / name) & 0o077 == 0, name
    for path in data_dir.glob("readmodel.sqlite3*"):
        assert _mode(path) == 0o600, path
    assert (data_dir / "readmodel.sqlite3").exists()
    assert _mode(data_dir / "secret.key") == 0o600
    assert _mode(data_dir / "admin.key") == 0o600


def test_a_running_platform_keeps_its_data_private(platform: PlatformProcess):
    with platform.client(timeout=60) as api:
        deploy(api, EXAMPLES / "hello", "modes")
        run = api.post("/v1/runs", json={"project": "modes", "input": {"delay": 0}}).json()["run_id"]
        assert wait_run(api, run)["status"] == "succeeded"
        _assert_private(platform.data_dir)
        assert api.get("/healthz").status_code == 200


def test_an_install_left_open_is_made_private_at_start(tmp_path: Path):
    data = tmp_path / "old-install"
    for folder in (data, data / "cache" / SOURCES, data / "work"):
        folder.mkdir(parents=True)
        folder.chmod(0o755)
    (data / "readmodel.sqlite3").write_bytes(b"")  # an empty file is an empty SQLite database
    (data / "readmodel.sqlite3").chmod(0o644)
    (data / "secret.key").write_text("q3w8Jf2W6lZ0p6Yq3B9kq8tq7wqJx8yZ0cW3d4e5f6g=")
    (data / "secret.key").chmod(0o644)
    (data / "admin.key").write_text("cyk_an-older-admin-key-left-readable-by-others-00\n")
    (data / "admin.key").chmod(0o644)
    platform = PlatformProcess(data).start()
    try:
        _assert_private(data)
        with platform.client(timeout=30) as api:
            assert api.get("/healthz").status_code == 200
            assert api.get("/v1/projects").status_code == 200
    finally:
        platform.stop()
