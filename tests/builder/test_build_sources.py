"""A deployment whose source the object store does not have, or has damaged, fails at once saying
so (every delivery would find the same); an object store that stays down fails the deployment at
the queue's last delivery, as an unreachable engine does — never a deployment ``building`` for good
once the queue stops delivering it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from builds import QuickBuilds, built, deploy

from crewyard.builder.service import Builder
from crewyard.core.events import DeploymentCreated, make_event
from crewyard.core.ids import new_id
from crewyard.eventstore import EventStore
from crewyard.objects import NatsObjectStore, ObjectCorrupt, ObjectStore, ObjectStoreError
from crewyard.settings import load

pytestmark = pytest.mark.timeout(120)
PROJECT = "sources"
CONFIG = {"entrypoint": "crew:graph"}


class FailingReads:
    """The object store, whose every read of a whole object raises ``error``."""

    def __init__(self, objects: ObjectStore, error: ObjectStoreError) -> None:
        self._objects = objects
        self.error = error
        self.reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._objects, name)

    async def get_file(self, name: str, path: Path) -> None:
        self.reads += 1
        raise self.error


@pytest.fixture
def objects(store: EventStore) -> ObjectStore:
    return NatsObjectStore(store.nc, store.settings.object_bucket)


@pytest.fixture
def crew(tmp_path: Path) -> Path:
    folder = tmp_path / "crew"
    folder.mkdir()
    (folder / "crewyard.toml").write_text('[deployment]\nentrypoint = "crew:graph"\n')
    (folder / "crew.py").write_text("graph = 1\n")
    return folder


async def test_a_deployment_whose_source_is_missing_fails_at_once_saying_so(
    tmp_path: Path, store: EventStore, objects: ObjectStore
) -> None:
    digest = "sha256-" + "0" * 64  # never uploaded
    created = DeploymentCreated(source_digest=digest, source_size=10, config=CONFIG)
    dep_id = new_id("dep")
    await store.append(make_event(created, project=PROJECT, aggregate_id=dep_id, event_id=new_id("evt")))
    backend = QuickBuilds()
    builder = Builder(load(tmp_path / "data"), store, objects, backend, "builder-test")

    state = await built(builder, store, PROJECT, dep_id)
    assert state.status == "failed", state
    assert state.error_message == (
        f"the deployment's source ({digest}) is not in the object store: deploy the crew again"
    )
    assert backend.builds == 0


async def test_a_deployment_whose_source_is_damaged_fails_at_once_saying_so(
    tmp_path: Path, store: EventStore, objects: ObjectStore, crew: Path
) -> None:
    dep_id = await deploy(store, objects, PROJECT, crew, CONFIG)
    damaged = FailingReads(objects, ObjectCorrupt("cannot read it: content does not match its digest"))
    builder = Builder(load(tmp_path / "data"), store, damaged, QuickBuilds(), "builder-test")

    state = await built(builder, store, PROJECT, dep_id)
    assert state.status == "failed", state
    assert state.error_message and "is damaged in the object store" in state.error_message
    assert damaged.reads == 1


async def test_an_object_store_still_down_at_the_last_delivery_fails_the_deployment_saying_why(
    tmp_path: Path, store: EventStore, objects: ObjectStore, crew: Path
) -> None:
    dep_id = await deploy(store, objects, PROJECT, crew, CONFIG)
    down = FailingReads(objects, ObjectStoreError("object store sources unavailable: timed out"))
    builder = Builder(load(tmp_path / "data"), store, down, QuickBuilds(), "builder-test")
    builder.queue.max_deliver = 2

    state = await built(builder, store, PROJECT, dep_id)
    assert state.status == "failed", state
    assert state.error_message == (
        "the platform's event or object store could not be used (2 tries):"
        " object store sources unavailable: timed out"
    )
    assert down.reads == 2
