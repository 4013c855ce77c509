"""Platforms the security tests attack: one per isolating backend, shared by the whole session.

Their limits are set so that the attacks stay quick: outputs up to 6 MiB (a 5 MB result is
carried whole, a 7 MB one is refused) and 5,000 events per run (a log flood is stopped fast).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from crewyard.core.events import Payload, make_event
from crewyard.core.ids import new_id
from crewyard.eventstore import EventStore, StreamSettings, connect
from crewyard.testing.platform import PlatformProcess

LIMITS = {"CREWYARD_MAX_OUTPUT_BYTES": str(6 * 1024 * 1024), "CREWYARD_RUN_MAX_EVENTS": "5000"}


@pytest.fixture(scope="session")
def bwrap_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformProcess]:
    p = PlatformProcess(
        tmp_path_factory.mktemp("sec-bwrap"), backend="bwrap", build_backend="venv", env=LIMITS
    )
    p.start()
    yield p
    p.stop()


@pytest.fixture(scope="session")
def docker_platform(
    tmp_path_factory: pytest.TempPathFactory, docker_host: str, base_image: str
) -> Iterator[PlatformProcess]:
    env = {**LIMITS, "CREWYARD_DOCKER_HOST": docker_host, "CREWYARD_BASE_IMAGE": base_image}
    p = PlatformProcess(
        tmp_path_factory.mktemp("sec-docker"), backend="docker", build_backend="docker", env=env
    )
    p.start()
    yield p
    p.stop()


@pytest.fixture
def api(platform: PlatformProcess) -> Iterator[httpx.Client]:
    """The API of the suite's shared platform, with its admin key."""
    with platform.client(timeout=120) as client:
        yield client


@pytest.fixture(params=["bwrap", "docker"])
def isolated_platform(request: pytest.FixtureRequest) -> PlatformProcess:
    platform: PlatformProcess = request.getfixturevalue(f"{request.param}_platform")
    return platform


def append_straight(platform: PlatformProcess, project: str, payload: Payload, aggregate_id: str) -> None:
    """Append an event as an earlier version of the platform could have stored it (no gateway)."""

    async def main() -> None:
        nc = await connect(platform.nats_url, name="test-attacker", creds=platform.creds())
        try:
            event = make_event(payload, project=project, aggregate_id=aggregate_id, event_id=new_id("evt"))
            await EventStore(nc, StreamSettings()).append(event)
        finally:
            await nc.drain()

    asyncio.run(main())


def run_types(events: list[dict[str, Any]]) -> list[str]:
    return [str(m["event"]) for m in events]
