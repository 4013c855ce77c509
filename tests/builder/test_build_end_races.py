"""A build's end that keeps losing races to other writers of the deployment is never given up on
quietly: the builder tries again with pauses, then leaves the message to be delivered again rather
than acknowledge it with the deployment left ``building`` for good; once the end can be written,
it is."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from builds import QuickBuilds, deploy, state_of

from crewyard.builder.service import Builder
from crewyard.core.deployment_state import BUILDING
from crewyard.core.events import Event
from crewyard.eventstore import ConcurrencyConflict, EventStore
from crewyard.objects import NatsObjectStore, ObjectStore
from crewyard.settings import load

pytestmark = pytest.mark.timeout(120)
PROJECT = "races"
ENDS = ("deployment.ready", "deployment.failed")


class RacedEnds:
    """The event store, where another writer appends to a deployment just before each of its
    build's ends while ``racing``."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self.racing = True
        self.lost = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def append(self, event: Event, **kwargs: Any) -> int:
        if self.racing and event.type in ENDS:
            self.lost += 1
            raise ConcurrencyConflict("another writer appended to the deployment first")
        return await self._store.append(event, **kwargs)


@pytest.fixture
def objects(store: EventStore) -> ObjectStore:
    return NatsObjectStore(store.nc, store.settings.object_bucket)


async def test_a_build_end_that_keeps_losing_races_is_delivered_again_until_it_is_written(
    tmp_path: Path, store: EventStore, objects: ObjectStore
) -> None:
    crew = tmp_path / "crew"
    crew.mkdir()
    (crew / "crewyard.toml").write_text('[deployment]\nentrypoint = "crew:graph"\n')
    (crew / "crew.py").write_text("graph = 1\n")
    dep_id = await deploy(store, objects, PROJECT, crew, {"entrypoint": "crew:graph"})
    raced, backend = RacedEnds(store), QuickBuilds()
    builder = Builder(load(tmp_path / "data"), raced, objects, backend, "builder-test")  # type: ignore[arg-type]
    builder.finish_patience = 0.5

    stop = asyncio.Event()
    running = asyncio.create_task(builder.run(stop))
    try:
        for _ in range(300):
            if backend.builds >= 2:
                break
            await asyncio.sleep(0.1)
        assert backend.builds >= 2, "the message was acknowledged with the build's end unwritten"
        assert raced.lost > 3  # tried again, with pauses, before giving the message back
        assert (await state_of(store, PROJECT, dep_id)).status == BUILDING

        raced.racing = False
        for _ in range(300):
            if (state := await state_of(store, PROJECT, dep_id)).status != BUILDING:
                break
            await asyncio.sleep(0.1)
        assert state.status == "ready", state
    finally:
        stop.set()
        await running
        await builder.queue.close()
