"""Connections end when asked to: a connect to a broker that is not there, a close while the
client reconnects to one that went away — nothing of either may go on retrying in the process."""

import asyncio
import socket

from crewyard.eventstore import abandon, cancel_until_done, close, connect
from crewyard.natsserver import EmbeddedNats
from crewyard.testing.tasks import tasks_left


async def test_a_task_that_swallows_its_first_cancel_is_cancelled_again_until_it_ends():
    swallowed = 0

    async def retrying() -> None:  # what nats-py's retry loop does with a lost cancel
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                swallowed += 1
                if swallowed == 1:
                    continue
                raise

    task = asyncio.create_task(retrying())
    await asyncio.sleep(0.01)
    await cancel_until_done(task, every=0.1)
    assert task.cancelled()
    assert swallowed == 2


async def test_a_connect_to_a_dead_port_cancelled_leaves_no_retrying_behind():
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))
        port = dead.getsockname()[1]
    before = asyncio.all_tasks()
    retries: list[Exception] = []
    retried = asyncio.Event()

    def on_retry(exc: Exception) -> None:
        retries.append(exc)
        retried.set()

    connecting = asyncio.create_task(connect(f"nats://127.0.0.1:{port}", name="t", on_retry=on_retry))
    await asyncio.wait_for(retried.wait(), 10)
    await cancel_until_done(connecting)
    await asyncio.sleep(0.6)  # longer than the client's reconnect wait: a retry would show
    seen = len(retries)
    await asyncio.sleep(0.6)
    assert len(retries) == seen, "the client still retries after its connect was cancelled"
    assert not await tasks_left(before)


async def _ignore(msg: object) -> None:
    return None


async def test_closing_a_client_whose_broker_went_away_ends_its_reconnecting_and_subscriptions(tmp_path):
    server = EmbeddedNats(tmp_path / "nats")
    server.start()
    try:
        nc = await connect(server.url, name="t", creds=server.creds("admin"))
        before = asyncio.all_tasks()
        await nc.subscribe("crewyard.test", cb=_ignore)  # a subscription's task, to be ended
    finally:
        server.stop()
    for _ in range(100):
        if nc.is_reconnecting:
            break
        await asyncio.sleep(0.05)
    assert nc.is_reconnecting
    await nc.publish("crewyard.test", b"held for the next server")  # never sent now
    await close(nc)
    assert nc.is_closed
    left = await tasks_left(before)
    assert not left, left


async def test_a_connect_given_up_just_as_it_connected_is_closed(nats_url: str, nats_admin: str):
    connecting = asyncio.create_task(connect(nats_url, name="t", creds=nats_admin))
    nc = await asyncio.shield(connecting)  # it connected; the cancel comes a moment too late
    await abandon(connecting)
    assert nc.is_closed
