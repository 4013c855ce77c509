"""What the host does with a build's env folder never reaches past it: a build that left a symbolic
link to a host path in its place (or below it) gets nothing outside sanitized, packed or installed.

The host folder holds what sanitizing would change (a fifo, a set-uid file) and a secret that
packing would upload."""

from __future__ import annotations

import os
import stat
import tarfile
from pathlib import Path
from typing import Any

import pytest

from crewyard.environments import BuildFailed, EnvironmentStore
from crewyard.environments import archive as env_archive


@pytest.fixture
def host_folder(tmp_path: Path) -> Path:
    outside = tmp_path / "host"
    outside.mkdir()
    os.mkfifo(outside / "fifo")
    (outside / "tool").write_text("#!/bin/sh\n")
    (outside / "tool").chmod(0o4755)
    (outside / "secret").write_text("s3cret\n")
    return outside


def _state(folder: Path) -> dict[str, int]:
    return {p.name: os.lstat(p).st_mode for p in folder.iterdir()}


def _exists(path: Path) -> bool:
    return os.path.lexists(path)


def _is_link(path: Path) -> bool:
    return path.is_symlink()


@pytest.fixture
def swapped_env(tmp_path: Path, host_folder: Path) -> Path:
    """A build's env folder replaced by a link to a host folder."""
    env = tmp_path / "scratch" / "env"
    env.parent.mkdir()
    env.symlink_to(host_folder)
    return env


def test_sanitize_and_pack_refuse_an_env_folder_that_is_a_link(
    tmp_path: Path, host_folder: Path, swapped_env: Path
) -> None:
    before = _state(host_folder)
    with pytest.raises(BuildFailed, match=r"replaced its environment folder \(env\) with a symbolic link"):
        env_archive.sanitize(swapped_env, 1 << 30, 1000)
    dest = tmp_path / "env.tar.gz"
    with pytest.raises(BuildFailed, match="symbolic link"):
        env_archive.pack(swapped_env, dest)
    assert not dest.exists()
    assert _state(host_folder) == before
    assert stat.S_ISFIFO(before["fifo"]) and before["tool"] & stat.S_ISUID


async def test_publishing_an_env_folder_that_is_a_link_fails_the_build_and_installs_nothing(
    tmp_path: Path, host_folder: Path, swapped_env: Path
) -> None:
    before = _state(host_folder)
    store = EnvironmentStore(tmp_path / "cache", None)
    with pytest.raises(BuildFailed, match=r"replaced its environment folder \(env\) with a symbolic link"):
        await store.publish("d" * 64, swapped_env, "/usr/bin/python3")
    assert _state(host_folder) == before
    assert not _exists(store.builds_of("d" * 64))
    assert _is_link(swapped_env)  # left where it was, for the build's clean-up


def test_links_below_the_env_folder_are_kept_as_links_never_followed(
    tmp_path: Path, host_folder: Path
) -> None:
    env = tmp_path / "env"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").write_text("")
    (env / "lib").symlink_to(host_folder)
    before = _state(host_folder)
    env_archive.sanitize(env, 1 << 30, 1000)
    dest = tmp_path / "env.tar.gz"
    env_archive.pack(env, dest)
    assert _state(host_folder) == before
    with tarfile.open(dest) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["lib"].issym() and set(members) == {"bin", "bin/python", "lib"}


def test_an_environment_that_cannot_be_read_whole_is_not_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the walk cannot look at would be packed unsanitized and uncounted: refused."""
    env = tmp_path / "env"
    (env / "lib").mkdir(parents=True)
    (env / "lib" / "tool").write_bytes(b"x")
    real = os.scandir

    class Refusing:
        def __init__(self, fd: Any) -> None:
            self.inner = real(fd)

        def __enter__(self) -> Any:
            self.inner.__enter__()
            raise PermissionError(13, "Permission denied")

        def __exit__(self, *exc: object) -> None:
            self.inner.__exit__(*exc)

    monkeypatch.setattr(os, "scandir", Refusing)
    with pytest.raises(BuildFailed, match=r"cannot be read whole \(Permission denied\)"):
        env_archive.sanitize(env, 1 << 30, 1000)
