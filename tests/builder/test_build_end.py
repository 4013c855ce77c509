"""Whatever a crew's files hold, its build ends in an event the core takes: a name in package.json
that is not valid UTF-8 (a lone surrogate, which JSON's ``\\ud800`` allows) fails the deployment
with the name quoted, never a ``deployment.failed`` that cannot be encoded — which was redelivered
until the queue gave up, the deployment left ``building`` for good."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from crewyard.builder.service import Builder
from crewyard.core.deployment_state import BUILDING, DeploymentState, fold_deployment
from crewyard.core.events import DeploymentCreated, DeploymentFailed, make_event
from crewyard.core.ids import new_id
from crewyard.environments import VenvBuilder
from crewyard.eventstore import EventStore
from crewyard.objects import NatsObjectStore, ObjectStore
from crewyard.packaging import check, pack
from crewyard.settings import load
from crewyard.workspace import source_object

pytestmark = pytest.mark.timeout(120)
PROJECT = "surrogates"


@pytest.fixture
def objects(store: EventStore) -> ObjectStore:
    return NatsObjectStore(store.nc, store.settings.object_bucket)


@pytest.fixture
def builder(tmp_path: Path, store: EventStore, objects: ObjectStore) -> Builder:
    settings = load(tmp_path / "data")
    return Builder(settings, store, objects, VenvBuilder(tmp_path / "cache", objects), "builder-test")


async def _deploy(store: EventStore, objects: ObjectStore, folder: Path) -> str:
    """What the gateway does for an upload: the source in the object store, ``deployment.created``."""
    data = pack(folder)
    digest = check(data).digest
    await objects.put_bytes(source_object(digest), data)
    dep_id = new_id("dep")
    config = {"framework": "langgraph-js", "entrypoint": "./crew.ts:graph"}
    created = DeploymentCreated(source_digest=digest, source_size=len(data), config=config)
    await store.append(make_event(created, project=PROJECT, aggregate_id=dep_id, event_id=new_id("evt")))
    return dep_id


def _js_crew(tmp_path: Path, package_json: str) -> Path:
    crew = tmp_path / "crew"
    crew.mkdir()
    (crew / "crewyard.toml").write_text(
        '[deployment]\nframework = "langgraph-js"\nentrypoint = "./crew.ts:graph"\n'
    )
    (crew / "crew.ts").write_text("export const graph = 1;\n")
    (crew / "package.json").write_text(package_json)
    return crew


async def _state(store: EventStore, dep_id: str) -> DeploymentState:
    return fold_deployment(dep_id, await store.load(PROJECT, "deployment", dep_id))


async def test_a_lone_surrogate_in_package_json_fails_the_deployment_saying_where(
    tmp_path: Path, store: EventStore, objects: ObjectStore, builder: Builder
) -> None:
    # JSON allows "\ud800": Python reads it as a lone surrogate, which UTF-8 (and an event) cannot carry.
    crew = _js_crew(tmp_path, '{"name": "crew", "dependencies": {"\\ud800": 7}}')
    assert "\ud800" in json.loads((crew / "package.json").read_text())["dependencies"]
    dep_id = await _deploy(store, objects, crew)

    stop = asyncio.Event()
    running = asyncio.create_task(builder.run(stop))
    try:
        for _ in range(300):
            state = await _state(store, dep_id)
            if state.status != BUILDING:
                break
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await running
    assert state.status == "failed", state
    assert state.error_message == "package.json dependencies['\\ud800'] must be a version string"


async def test_a_failure_that_cannot_be_stored_is_recorded_in_words_of_the_builders_own(
    tmp_path: Path, store: EventStore, objects: ObjectStore, builder: Builder
) -> None:
    crew = _js_crew(tmp_path, "{}")
    dep_id = await _deploy(store, objects, crew)

    unstorable = DeploymentFailed(error_message="a message no event can carry: \udcff")
    assert await builder._finish(PROJECT, dep_id, unstorable)
    state = await _state(store, dep_id)
    assert state.status == "failed", state
    assert state.error_message and "could not be stored" in state.error_message
