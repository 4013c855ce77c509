"""Stopping: a platform whose broker went away still stops when told, and leaves nothing behind
— no connect retried forever, no service half-stopped."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from crewyard import platform, settings
from crewyard.eventstore import EventStore, close, connect, ensure_stream
from crewyard.natsserver import EmbeddedNats
from crewyard.notifier.service import Notifier
from crewyard.projector.service import Projector
from crewyard.scheduler.service import Scheduler
from crewyard.secrets import SecretBox, load_key
from crewyard.servicekit import unless_stopped
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


# -- each service's loop, stopped while a read of its gone broker is pending ---------------------

#: Longer than any test may take: a service that sat through such a read would never stop in time.
SLOW_READ_S = 600.0


async def test_work_unless_stopped_gives_its_result_or_error_and_ends_with_a_stop_or_a_cancel():
    stop = asyncio.Event()
    assert await unless_stopped(asyncio.sleep(0, result=[1]), stop) == [1]
    with pytest.raises(ValueError, match="boom"):
        await unless_stopped(_fails(), stop)
    ended: list[str] = []
    stopping = asyncio.create_task(unless_stopped(_waits(ended), stop))
    await asyncio.sleep(0.05)
    stop.set()
    assert await stopping is None
    assert ended == ["cancelled"]
    cancelled = asyncio.create_task(unless_stopped(_waits(ended), asyncio.Event()))
    await asyncio.sleep(0.05)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert ended == ["cancelled", "cancelled"]


async def _fails() -> None:
    raise ValueError("boom")


async def _waits(ended: list[str]) -> None:
    try:
        await asyncio.sleep(SLOW_READ_S)
    except asyncio.CancelledError:
        ended.append("cancelled")
        raise


def _loops(
    conf: settings.Settings, store: EventStore
) -> dict[str, Callable[[asyncio.Event], Awaitable[None]]]:
    return {
        "projector": Projector(store, conf.db_path).run,
        "scheduler": Scheduler(conf, store).run,
        "notifier deliveries": Notifier(conf, store, SecretBox(load_key(conf.data_dir))).deliverer.run,
    }


@pytest.mark.parametrize("service", ["projector", "scheduler", "notifier deliveries"])
async def test_a_service_stops_without_waiting_for_a_read_of_a_broker_that_went_away(
    tmp_path: Path, service: str
):
    broker = EmbeddedNats(tmp_path / "nats", port=free_port())
    broker.start()
    conf = settings.load(tmp_path / "data", nats_url=broker.url)
    before = asyncio.all_tasks()
    nc = await connect(broker.url, name="t", creds=str(broker.creds("admin")))
    store = EventStore(nc, read_timeout=SLOW_READ_S, request_timeout=SLOW_READ_S)
    try:
        await ensure_stream(store.js, store.settings)
        broker.stop()
        stop = asyncio.Event()
        running = asyncio.create_task(_loops(conf, store)[service](stop))
        await asyncio.sleep(1.5)  # in its first read by now, which no broker will ever answer
        assert not running.done(), running
        stop.set()
        await asyncio.wait_for(running, 30)  # not SLOW_READ_S
    finally:
        await close(nc)
    left = await tasks_left(before)  # the reads given up are not left running either
    assert not left, left
