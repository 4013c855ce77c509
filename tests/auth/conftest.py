"""Platform users of the suite's nats-server, each with the permissions its service gets, on
streams of their own per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from crewyard.auth import Issuer, Names, load_or_create, service_permissions
from crewyard.eventstore import EventStore, StreamSettings, connect, ensure_platform_stream, ensure_stream
from crewyard.natsserver import EmbeddedNats


@dataclass
class Streams:
    """Fresh platform streams on the suite's server, and credentials issued for them."""

    url: str
    settings: StreamSettings
    names: Names
    issuer: Issuer
    admin: EventStore

    def creds(self, service: str) -> str:
        return self.issuer.user_creds(service, service_permissions(service, self.names))

    async def store(self, service: str) -> EventStore:
        nc = await connect(self.url, name=f"test-{service}", creds=self.creds(service))
        return EventStore(nc, self.settings)


@pytest.fixture
async def streams(nats_server: EmbeddedNats, nats_admin: str) -> AsyncIterator[Streams]:
    tag = uuid.uuid4().hex[:10].upper()
    settings = StreamSettings(
        name=f"E_{tag}",
        prefix=f"e{tag.lower()}.evt",
        object_bucket=f"O_{tag}",
        platform_name=f"P_{tag}",
        platform_prefix=f"e{tag.lower()}.platform",
    )
    names = Names(
        events=settings.name,
        prefix=settings.prefix,
        platform=settings.platform_name,
        platform_prefix=settings.platform_prefix,
        objects=settings.object_bucket,
    )
    nc = await connect(nats_server.url, name="test-admin", creds=nats_admin)
    admin = EventStore(nc, settings)
    await ensure_stream(admin.js, settings)
    await ensure_platform_stream(admin.js, settings)
    issuer = load_or_create(nats_server.auth_dir).issuer()
    yield Streams(nats_server.url, settings, names, issuer, admin)
    await nc.drain()
