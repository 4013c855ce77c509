"""What the builder tests share: a crew uploaded as the gateway does it, and a builder run until
the deployment's build has ended."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from crewyard.builder.service import Builder
from crewyard.core.deployment_state import BUILDING, DeploymentState, fold_deployment
from crewyard.core.events import DeploymentCreated, make_event
from crewyard.core.ids import new_id
from crewyard.environments import BuildRequest, BuildResult, LogSink
from crewyard.eventstore import EventStore
from crewyard.objects import ObjectStore
from crewyard.packaging import check, pack
from crewyard.workspace import source_object


class QuickBuilds:
    """A build backend whose builds succeed at once; counts them (and its sweeps)."""

    name = "venv"

    def __init__(self) -> None:
        self.builds = self.sweeps = 0

    async def build(self, request: BuildRequest, log: LogSink) -> BuildResult:
        self.builds += 1
        return BuildResult(backend=self.name, env_digest="sha256-env", cached=True, env_sha256="0" * 64)

    async def sweep(self) -> int:
        self.sweeps += 1
        return 0


async def deploy(
    store: EventStore, objects: ObjectStore, project: str, folder: Path, config: dict[str, Any]
) -> str:
    """What the gateway does for an upload: the source in the object store, ``deployment.created``."""
    data = pack(folder)
    digest = check(data).digest
    await objects.put_bytes(source_object(digest), data)
    dep_id = new_id("dep")
    created = DeploymentCreated(source_digest=digest, source_size=len(data), config=config)
    await store.append(make_event(created, project=project, aggregate_id=dep_id, event_id=new_id("evt")))
    return dep_id


async def state_of(store: EventStore, project: str, dep_id: str) -> DeploymentState:
    return fold_deployment(dep_id, await store.load(project, "deployment", dep_id))


async def built(builder: Builder, store: EventStore, project: str, dep_id: str) -> DeploymentState:
    """Run ``builder`` until the deployment is no longer building (30 s at most); its state then."""
    stop = asyncio.Event()
    running = asyncio.create_task(builder.run(stop))
    try:
        for _ in range(300):
            state = await state_of(store, project, dep_id)
            if state.status != BUILDING:
                break
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await running
        await builder.queue.close()  # else the store's drain waits out its timeout on it
    return state
