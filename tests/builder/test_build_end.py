"""Whatever a crew's files hold, its build ends in an event the core takes: a name in package.json
that is not valid UTF-8 (a lone surrogate, which JSON's ``\\ud800`` allows) fails the deployment
with the name quoted, never a ``deployment.failed`` that cannot be encoded — which was redelivered
until the queue gave up, the deployment left ``building`` for good."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from builds import built, deploy, state_of

from crewyard.builder.service import Builder
from crewyard.core.events import DeploymentFailed
from crewyard.environments import VenvBuilder
from crewyard.eventstore import EventStore
from crewyard.objects import NatsObjectStore, ObjectStore
from crewyard.settings import load

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
    config = {"framework": "langgraph-js", "entrypoint": "./crew.ts:graph"}
    return await deploy(store, objects, PROJECT, folder, config)


def _js_crew(tmp_path: Path, package_json: str) -> Path:
    crew = tmp_path / "crew"
    crew.mkdir()
    (crew / "crewyard.toml").write_text(
        '[deployment]\nframework = "langgraph-js"\nentrypoint = "./crew.ts:graph"\n'
    )
    (crew / "crew.ts").write_text("export const graph = 1;\n")
    (crew / "package.json").write_text(package_json)
    return crew


async def test_a_lone_surrogate_in_package_json_fails_the_deployment_saying_where(
    tmp_path: Path, store: EventStore, objects: ObjectStore, builder: Builder
) -> None:
    # JSON allows "\ud800": Python reads it as a lone surrogate, which UTF-8 (and an event) cannot carry.
    crew = _js_crew(tmp_path, '{"name": "crew", "dependencies": {"\\ud800": 7}}')
    assert "\ud800" in json.loads((crew / "package.json").read_text())["dependencies"]
    dep_id = await _deploy(store, objects, crew)

    state = await built(builder, store, PROJECT, dep_id)
    assert state.status == "failed", state
    assert state.error_message == "package.json dependencies['\\ud800'] must be a version string"


async def test_a_failure_that_cannot_be_stored_is_recorded_in_words_of_the_builders_own(
    tmp_path: Path, store: EventStore, objects: ObjectStore, builder: Builder
) -> None:
    crew = _js_crew(tmp_path, "{}")
    dep_id = await _deploy(store, objects, crew)

    unstorable = DeploymentFailed(error_message="a message no event can carry: \udcff")
    assert await builder._finish(PROJECT, dep_id, unstorable)
    state = await state_of(store, PROJECT, dep_id)
    assert state.status == "failed", state
    assert state.error_message and "could not be stored" in state.error_message
