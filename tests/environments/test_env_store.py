"""Two builders may build one environment at once (two deployments of the same dependencies):
their archives differ (file times), and each deployment records its own sha256. Every
deployment must still find the archive it recorded, the manifest must name an archive that is
there, and a host must never replace a folder runs are using with another build of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from crewyard.environments import EnvironmentStore
from crewyard.environments.archive import ArchiveCorrupt
from crewyard.environments.store import archive_object
from crewyard.eventstore import EventStore
from crewyard.objects import NatsObjectStore, ObjectStore

DIGEST = "envdigest-race"


@pytest.fixture
def objects(store: EventStore) -> ObjectStore:
    return NatsObjectStore(store.nc, store.settings.object_bucket)


def _built(root: Path, stamp: str) -> Path:
    env = root / "built"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "tool").write_text(f"#!/bin/sh\necho {stamp}\n")
    return env


async def test_builds_of_one_environment_racing_each_keep_their_archive(
    tmp_path: Path, objects: ObjectStore
) -> None:
    first = await EnvironmentStore(tmp_path / "builder-a", objects).publish(
        DIGEST, _built(tmp_path / "a", "a"), "/usr/bin/python3"
    )
    second = await EnvironmentStore(tmp_path / "builder-b", objects).publish(
        DIGEST, _built(tmp_path / "b", "b"), "/usr/bin/python3"
    )
    assert first.sha256 != second.sha256

    # The deployment built by the first builder finds exactly its archive on another host.
    runner = EnvironmentStore(tmp_path / "runner", objects)
    folder = await runner.fetch(DIGEST, first.sha256)
    assert (folder / "bin" / "tool").read_text().endswith("echo a\n")
    # The newest manifest names an archive that is there.
    latest = await EnvironmentStore(tmp_path / "fresh", objects).published(DIGEST)
    assert latest is not None and latest.sha256 == second.sha256
    assert await objects.exists(archive_object(DIGEST, latest.sha256))

    # A run of the other deployment on this host gets the build that deployment recorded (its
    # requirements may have resolved otherwise), beside the first: the folder runs of the first
    # are using is not replaced under them.
    (folder / "in-use").write_text("a run's file\n")
    other = await runner.fetch(DIGEST, second.sha256)
    assert other != folder and (other / "bin" / "tool").read_text().endswith("echo b\n")
    assert (folder / "in-use").exists() and await runner.fetch(DIGEST, first.sha256) == folder


async def test_a_build_unpacked_by_two_processes_at_once_is_kept_as_the_first_made_it(
    tmp_path: Path, objects: ObjectStore
) -> None:
    built = await EnvironmentStore(tmp_path / "builder", objects).publish(
        DIGEST + "-twice", _built(tmp_path / "a", "a"), "/usr/bin/python3"
    )
    # Two processes of one host (a runner, a builder) share its cache, each with its own locks.
    first, second = EnvironmentStore(tmp_path / "host", objects), EnvironmentStore(tmp_path / "host", objects)
    folder = await first.fetch(DIGEST + "-twice", built.sha256)
    (folder / "in-use").write_text("a run's file\n")
    second_copy = tmp_path / "host" / "envs" / "unpacked-meanwhile"
    second_copy.mkdir()
    second._install(second_copy, built)  # what the other process's fetch ends with
    assert (folder / "in-use").exists()  # the folder in use was kept; the copy is its maker's
    assert second_copy.exists()


async def test_an_archive_that_is_not_what_its_name_says_is_refused(
    tmp_path: Path, objects: ObjectStore
) -> None:
    built = await EnvironmentStore(tmp_path / "builder", objects).publish(
        DIGEST + "-tampered", _built(tmp_path / "a", "a"), "/usr/bin/python3"
    )
    other = tmp_path / "other.tar.gz"
    other.write_bytes(b"not the archive")
    await objects.put_file(archive_object(DIGEST + "-tampered", built.sha256), other)
    with pytest.raises(ArchiveCorrupt):
        await EnvironmentStore(tmp_path / "runner", objects).fetch(DIGEST + "-tampered", built.sha256)
