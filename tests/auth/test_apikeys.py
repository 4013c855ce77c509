"""API keys across gateways: one first admin key, creations and revocations seen everywhere."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from crewyard.auth.apikeys import KeyError_, KeyRegistry

from .conftest import Streams

pytestmark = pytest.mark.timeout(120)


async def _gateways(streams: Streams, n: int) -> list[KeyRegistry]:
    out = []
    for _ in range(n):
        registry = KeyRegistry(await streams.store("gateway"))
        await registry.start()
        out.append(registry)
    return out


async def _close(registries: list[KeyRegistry]) -> None:
    for r in registries:
        await r.stop()
        await r.store.nc.drain()


async def test_the_first_admin_key_is_made_once_when_gateways_start_together(streams: Streams):
    gateways = await _gateways(streams, 3)
    try:
        tokens = await asyncio.gather(*(g.bootstrap() for g in gateways))
        made = [t for t in tokens if t]
        assert len(made) == 1
        for g in gateways:  # every gateway knows it, and a later start makes no other
            deadline = time.monotonic() + 10
            while g.authenticate(made[0]) is None:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
        assert await gateways[0].bootstrap() is None
        assert len(gateways[0].keys) == 1 and gateways[0].keys.popitem()[1].role == "admin"
    finally:
        await _close(gateways)


async def test_a_revocation_reaches_another_gateway_at_once(streams: Streams):
    first, second = await _gateways(streams, 2)
    try:
        admin_token = await first.bootstrap()
        assert admin_token
        admin = first.authenticate(admin_token)
        key, token = await first.create(name="ci", role="deploy", project="acme", created_by=admin)
        deadline = time.monotonic() + 10
        while second.authenticate(token) is None:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.005)
        await first.revoke(key.key_id, by=admin)
        revoked_at = time.monotonic()
        while second.authenticate(token) is not None:
            assert time.monotonic() < revoked_at + 10
            await asyncio.sleep(0.005)
        seen_after = time.monotonic() - revoked_at
        print(f"revocation seen by the second gateway after {seen_after * 1000:.1f} ms")
        assert first.authenticate(token) is None
    finally:
        await _close([first, second])


async def test_expired_malformed_and_unknown_tokens_authenticate_nothing(streams: Streams):
    (registry,) = await _gateways(streams, 1)
    try:
        soon = datetime.now(UTC) + timedelta(minutes=5)
        _, token = await registry.create(name="short", role="read", project="acme", expires_at=soon)
        assert registry.authenticate(token) is not None
        assert registry.authenticate(token, now=soon + timedelta(seconds=1)) is None
        for bad in ("", "x" * 10_000, token + "x", token[:-1], "cyk_" + "A" * 43, token.upper()):
            assert registry.authenticate(bad) is None
    finally:
        await _close([registry])


async def test_a_key_that_expires_creates_only_keys_that_expire_with_it_or_before(streams: Streams):
    (registry,) = await _gateways(streams, 1)
    try:
        ends = datetime.now(UTC) + timedelta(minutes=5)
        _, token = await registry.create(name="temp", role="admin", project="acme", expires_at=ends)
        temp = registry.authenticate(token)
        assert temp is not None
        child, _ = await registry.create(name="child", role="read", project="acme", created_by=temp)
        assert child.expires_at == ends  # none asked for: it ends with the key that made it
        sooner, _ = await registry.create(
            name="sooner",
            role="read",
            project="acme",
            created_by=temp,
            expires_at=ends - timedelta(minutes=1),
        )
        assert sooner.expires_at == ends - timedelta(minutes=1)
        with pytest.raises(KeyError_, match="expire when it does or before"):
            await registry.create(
                name="later",
                role="read",
                project="acme",
                created_by=temp,
                expires_at=ends + timedelta(days=1),
            )
        lasting, _ = await registry.create(name="root-made", role="read", project="acme")
        assert lasting.expires_at is None  # a key without an end makes keys without one
    finally:
        await _close([registry])


async def test_keys_create_only_keys_no_wider_than_themselves(streams: Streams):
    (registry,) = await _gateways(streams, 1)
    try:
        _, admin_token = await registry.create(name="acme-admin", role="admin", project="acme")
        admin = registry.authenticate(admin_token)
        await registry.create(name="ok", role="deploy", project="acme", created_by=admin)
        for role, project in (("read", "other"), ("admin", None)):
            with pytest.raises(KeyError_):
                await registry.create(name="no", role=role, project=project, created_by=admin)
    finally:
        await _close([registry])
