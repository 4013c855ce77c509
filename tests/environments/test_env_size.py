"""An environment is bounded by what it takes once packed and unpacked on every runner, not by the
blocks it takes on the builder's disk: a sparse file counts at its full size, every file and folder
(empty ones too: inodes) counts against a bound, and folders nested thousands deep are refused
without recursing into them. A build over a bound is stopped (the scratch folder is watched), a
built environment over it is not published, and a runner unpacks none past it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from crewyard.environments import BuildFailed, EnvironmentStore, Manifest, sandbox, usage
from crewyard.environments import archive as env_archive
from crewyard.environments.store import EnvironmentTooLarge, manifest_object
from crewyard.eventstore import EventStore
from crewyard.objects import NatsObjectStore

MiB = 1 << 20


@pytest.fixture
def sparse_env(tmp_path: Path) -> Path:
    """An environment holding a 64 MiB file that takes no blocks (``truncate -s 64M``)."""
    env = tmp_path / "env"
    env.mkdir()
    with (env / "hole").open("wb") as fh:
        fh.truncate(64 * MiB)
    assert os.lstat(env / "hole").st_blocks == 0
    return env


@pytest.fixture
def env_of_empty_files(tmp_path: Path) -> Path:
    """An environment of 300 empty files and folders: no bytes, 300 inodes."""
    env = tmp_path / "env"
    for i in range(100):
        (env / f"d{i}").mkdir(parents=True)
        (env / f"d{i}" / "empty").touch()
        (env / f"f{i}").touch()
    return env


@pytest.fixture
def deeply_nested_env(tmp_path: Path) -> Iterator[Path]:
    """An environment nesting folders 1,100 deep (more than a recursive walk's stack allows),
    with a file at the bottom."""
    env = tmp_path / "env"
    env.mkdir()
    fd = os.open(env, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(1100):
        os.mkdir("n", dir_fd=fd)
        fd, parent = os.open("n", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd), fd
        os.close(parent)
    os.close(os.open("bottom", os.O_WRONLY | os.O_CREAT, dir_fd=fd))
    os.close(fd)
    yield env
    usage.remove(env)  # pytest's own clean-up recurses


def test_a_sparse_file_counts_at_its_full_size(sparse_env: Path) -> None:
    limits = sandbox.BuildLimits(disk_bytes=32 * MiB)
    assert sandbox.over_disk(sparse_env, limits) == "the build wrote more than 32 MiB (disk limit)"
    with pytest.raises(BuildFailed, match=r"the environment holds more than 32 MiB \(disk limit"):
        env_archive.sanitize(sparse_env, 32 * MiB, 1000)
    assert env_archive.sanitize(sparse_env, 128 * MiB, 1000) == 64 * MiB


def test_empty_files_and_folders_count_against_the_file_count_limit(env_of_empty_files: Path) -> None:
    limits = sandbox.BuildLimits(entries=100)  # the scratch folder may hold twice as many
    assert sandbox.over_disk(env_of_empty_files, limits) == (
        "the build wrote more than 200 files and folders (file count limit)"
    )
    assert sandbox.over_disk(env_of_empty_files, sandbox.BuildLimits(entries=150)) is None
    with pytest.raises(BuildFailed, match=r"holds more than 200 files and folders \(file count limit\)"):
        env_archive.sanitize(env_of_empty_files, 1 << 30, 200)


def test_folders_nested_thousands_deep_are_refused_without_recursing(deeply_nested_env: Path) -> None:
    assert sandbox.over_disk(deeply_nested_env, sandbox.BuildLimits()) == (
        "the build wrote folders nested deeper than 256 (depth limit)"
    )
    with pytest.raises(BuildFailed, match=r"the environment holds folders nested deeper than 256"):
        env_archive.sanitize(deeply_nested_env, 1 << 30, 1_000_000)


def test_what_a_build_nested_thousands_deep_is_removed(deeply_nested_env: Path) -> None:
    usage.remove(deeply_nested_env)
    assert not deeply_nested_env.exists()


async def test_an_environment_over_the_limit_is_not_published(tmp_path: Path, sparse_env: Path) -> None:
    store = EnvironmentStore(tmp_path / "cache", None, sandbox.BuildLimits(disk_bytes=32 * MiB))
    with pytest.raises(BuildFailed, match="more than 32 MiB"):
        await store.publish("d" * 64, sparse_env, "/usr/bin/python3")
    assert not store.builds_of("d" * 64).exists()


def test_a_runner_unpacks_no_archive_past_the_limits(tmp_path: Path, sparse_env: Path) -> None:
    tarball = tmp_path / "env.tar.gz"
    sha256 = env_archive.pack(sparse_env, tarball)
    with pytest.raises(BuildFailed, match="unpacks to more than 32 MiB"):
        env_archive.unpack(tarball, tmp_path / "small", sha256, 32 * MiB, 1000)
    with pytest.raises(BuildFailed, match="more than 0 files and folders"):
        env_archive.unpack(tarball, tmp_path / "few", sha256, 1 << 30, 0)
    assert env_archive.unpack(tarball, tmp_path / "whole", sha256, 1 << 30, 1000) == 64 * MiB


async def test_a_runner_downloads_no_environment_whose_manifest_is_over_the_limit(
    tmp_path: Path, store: EventStore
) -> None:
    objects = NatsObjectStore(store.nc, store.settings.object_bucket)
    digest = "e" * 64
    manifest = Manifest(digest=digest, sha256="0" * 64, size=64 * MiB, python="/usr/bin/python3")
    await objects.put_bytes(manifest_object(digest), msgspec.json.encode(manifest))
    runner = EnvironmentStore(tmp_path / "cache", objects, sandbox.BuildLimits(disk_bytes=32 * MiB))
    with pytest.raises(EnvironmentTooLarge, match="unpacks to 64 MiB, more than the 32 MiB"):
        await runner.fetch(digest, manifest.sha256)
    assert not (tmp_path / "cache" / "envs").exists() or not any((tmp_path / "cache" / "envs").iterdir())
