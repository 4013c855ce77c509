"""Stopping: a platform whose broker went away still stops when told, and leaves nothing behind
— no connect retried forever, no service half-stopped."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx

from crewyard import platform, settings
from crewyard.natsserver import EmbeddedNats
from crewyard.testing.platform import free_port
from crewyard.testing.tasks import tasks_left


async def _ready(api: str, up: asyncio.Task[None]) -> None:
    async with httpx.AsyncClient(base_url=api, timeout=5) as client:
        for _ in range(600):
            assert not up.done(), up
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("the platform never became ready")


async def test_a_platform_whose_broker_went_away_stops_and_leaves_nothing_running(tmp_path: Path):
    broker = EmbeddedNats(tmp_path / "nats", port=free_port())
    broker.start()
    port = free_port()
    conf = settings.load(
        tmp_path / "data",
        nats_url=broker.url,
        nats_creds=str(broker.auth_dir / "creds"),
        port=port,
        backend="process",
    )
    before = asyncio.all_tasks()
    stop = asyncio.Event()
    up = asyncio.create_task(platform.up(conf, embedded_nats=False, stop=stop))
    try:
        await _ready(f"http://127.0.0.1:{port}", up)
    finally:
        broker.stop()
    await asyncio.sleep(1.5)  # every connection notices, and starts reconnecting
    assert not up.done(), up
    stop.set()
    try:
        await asyncio.wait_for(up, 60)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):  # up() stops on these: the loop's, not ours
            asyncio.get_running_loop().remove_signal_handler(sig)
    left = await tasks_left(before)
    assert not left, left
