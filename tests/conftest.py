"""Fixtures shared by the whole suite: a real nats-server with JetStream, an event store on a
stream of its own per test, and whole platforms started as child processes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from crewyard.eventstore import EventStore, StreamSettings, connect, ensure_stream
from crewyard.natsserver import EmbeddedNats
from crewyard.testing.platform import PlatformProcess


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = EmbeddedNats(tmp_path_factory.mktemp("nats"))
    url = server.start()
    yield url
    server.stop()


@pytest.fixture
async def store(nats_url: str) -> AsyncIterator[EventStore]:
    """An event store on a fresh stream (own name and subject prefix) of the shared server."""
    tag = uuid.uuid4().hex[:10]
    settings = StreamSettings(name=f"T_{tag}", prefix=f"t{tag}.evt", object_bucket=f"T_{tag}_OBJ")
    nc = await connect(nats_url, name="test")
    es = EventStore(nc, settings)
    await ensure_stream(es.js, settings)
    yield es
    await nc.drain()


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformProcess]:
    """A running ``crewyard up`` (process backend) for a whole test module."""
    p = PlatformProcess(tmp_path_factory.mktemp("platform"))
    p.start()
    yield p
    p.stop()


@pytest.fixture
def api(platform: PlatformProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=platform.api, timeout=30) as client:
        yield client
