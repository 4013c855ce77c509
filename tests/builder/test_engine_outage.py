"""A container engine that cannot be reached is the platform's problem, not the crew's: the build
is tried again later (the deployment stays ``building``), and succeeds once the engine is back; an
engine still down at the queue's last delivery fails the deployment saying why, never leaving it
``building`` for good."""

from __future__ import annotations

from pathlib import Path

import pytest
from builds import built, deploy

from crewyard.builder.backends import BuildBackendUnavailable
from crewyard.builder.service import Builder
from crewyard.core.deployment_state import DeploymentState
from crewyard.environments import BuildRequest, BuildResult, LogSink
from crewyard.eventstore import EventStore
from crewyard.objects import NatsObjectStore, ObjectStore
from crewyard.settings import load

pytestmark = pytest.mark.timeout(120)
PROJECT = "outage"


class EngineDownFor:
    """A build backend whose engine answers only after ``outages`` failed attempts."""

    name = "docker"

    def __init__(self, outages: int) -> None:
        self.outages = outages
        self.attempts = 0
        self.sweeps = 0

    async def build(self, request: BuildRequest, log: LogSink) -> BuildResult:
        self.attempts += 1
        if self.attempts <= self.outages:
            raise BuildBackendUnavailable("container engine unreachable: connection refused")
        return BuildResult(backend=self.name, env_digest="sha256-env", cached=False, image="crew:test")

    async def sweep(self) -> int:
        self.sweeps += 1
        if self.sweeps == 1:  # a sweep that fails is the builder's log's business, never its end
            raise BuildBackendUnavailable("container engine unreachable: connection refused")
        return 0


@pytest.fixture
def objects(store: EventStore) -> ObjectStore:
    return NatsObjectStore(store.nc, store.settings.object_bucket)


async def _built(
    tmp_path: Path, store: EventStore, objects: ObjectStore, backend: EngineDownFor
) -> DeploymentState:
    crew = tmp_path / "crew"
    crew.mkdir()
    (crew / "crewyard.toml").write_text('[deployment]\nentrypoint = "crew:graph"\n')
    (crew / "crew.py").write_text("graph = 1\n")
    dep_id = await deploy(store, objects, PROJECT, crew, {"entrypoint": "crew:graph"})
    builder = Builder(load(tmp_path / "data"), store, objects, backend, "builder-test")
    builder.engine_retry_delay = 0.1
    return await built(builder, store, PROJECT, dep_id)


async def test_a_build_the_engine_could_not_take_is_tried_again_and_succeeds(
    tmp_path: Path, store: EventStore, objects: ObjectStore
) -> None:
    backend = EngineDownFor(outages=2)
    state = await _built(tmp_path, store, objects, backend)
    assert state.status == "ready", state
    assert backend.attempts == 3
    assert backend.sweeps == 1  # dead builders' leftovers are looked for as the builder starts


async def test_an_engine_down_through_every_delivery_fails_the_deployment_saying_why(
    tmp_path: Path, store: EventStore, objects: ObjectStore
) -> None:
    backend = EngineDownFor(outages=100)
    state = await _built(tmp_path, store, objects, backend)
    assert state.status == "failed", state
    assert state.error_message and "container engine could not be reached (5 tries)" in state.error_message
    assert backend.attempts == 5
