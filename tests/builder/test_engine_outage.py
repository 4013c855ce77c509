"""A container engine that cannot be reached is the platform's problem, not the crew's: the build
is tried again later (the deployment stays ``building``), and succeeds once the engine is back; an
engine still down at the queue's last delivery fails the deployment saying why, never leaving it
``building`` for good."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from crewyard.builder.backends import BuildBackendUnavailable
from crewyard.builder.service import Builder
from crewyard.core.deployment_state import BUILDING, DeploymentState, fold_deployment
from crewyard.core.events import DeploymentCreated, make_event
from crewyard.core.ids import new_id
from crewyard.environments import BuildRequest, BuildResult, LogSink
from crewyard.eventstore import EventStore
from crewyard.objects import NatsObjectStore, ObjectStore
from crewyard.packaging import check, pack
from crewyard.settings import load
from crewyard.workspace import source_object

pytestmark = pytest.mark.timeout(120)
PROJECT = "outage"


class EngineDownFor:
    """A build backend whose engine answers only after ``outages`` failed attempts."""

    name = "docker"

    def __init__(self, outages: int) -> None:
        self.outages = outages
        self.attempts = 0

    async def build(self, request: BuildRequest, log: LogSink) -> BuildResult:
        self.attempts += 1
        if self.attempts <= self.outages:
            raise BuildBackendUnavailable("container engine unreachable: connection refused")
        return BuildResult(backend=self.name, env_digest="sha256-env", cached=False, image="crew:test")


@pytest.fixture
def objects(store: EventStore) -> ObjectStore:
    return NatsObjectStore(store.nc, store.settings.object_bucket)


async def _deploy(tmp_path: Path, store: EventStore, objects: ObjectStore) -> str:
    crew = tmp_path / "crew"
    crew.mkdir()
    (crew / "crewyard.toml").write_text('[deployment]\nentrypoint = "crew:graph"\n')
    (crew / "crew.py").write_text("graph = 1\n")
    data = pack(crew)
    digest = check(data).digest
    await objects.put_bytes(source_object(digest), data)
    dep_id = new_id("dep")
    created = DeploymentCreated(
        source_digest=digest, source_size=len(data), config={"entrypoint": "crew:graph"}
    )
    await store.append(make_event(created, project=PROJECT, aggregate_id=dep_id, event_id=new_id("evt")))
    return dep_id


async def _built(
    tmp_path: Path, store: EventStore, objects: ObjectStore, backend: EngineDownFor
) -> DeploymentState:
    dep_id = await _deploy(tmp_path, store, objects)
    builder = Builder(load(tmp_path / "data"), store, objects, backend, "builder-test")
    builder.engine_retry_delay = 0.1
    stop = asyncio.Event()
    running = asyncio.create_task(builder.run(stop))
    try:
        for _ in range(300):
            state = fold_deployment(dep_id, await store.load(PROJECT, "deployment", dep_id))
            if state.status != BUILDING:
                break
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await running
        await builder.queue.close()  # else the store's drain waits out its timeout on it
    return state


async def test_a_build_the_engine_could_not_take_is_tried_again_and_succeeds(
    tmp_path: Path, store: EventStore, objects: ObjectStore
) -> None:
    backend = EngineDownFor(outages=2)
    state = await _built(tmp_path, store, objects, backend)
    assert state.status == "ready", state
    assert backend.attempts == 3


async def test_an_engine_down_through_every_delivery_fails_the_deployment_saying_why(
    tmp_path: Path, store: EventStore, objects: ObjectStore
) -> None:
    backend = EngineDownFor(outages=100)
    state = await _built(tmp_path, store, objects, backend)
    assert state.status == "failed", state
    assert state.error_message and "container engine could not be reached (5 tries)" in state.error_message
    assert backend.attempts == 5
