"""The deliverer against the real server and a real receiver: what it reads before sending, and
what it does with what it cannot read."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import msgspec
import pytest

from crewyard.core.events import (
    DeliveryQueued,
    DeliveryRedeliveryRequested,
    Payload,
    Recorded,
    RunQueued,
    WebhookCreated,
    encode,
    make_event,
)
from crewyard.core.ids import new_id
from crewyard.core.signing import new_secret
from crewyard.core.webhooks import RetryPolicy, group_id
from crewyard.eventstore import EventStore, set_aside_counts
from crewyard.notifier.deliver import Deliverer
from crewyard.notifier.health import Health
from crewyard.notifier.sender import Guard, Sender
from crewyard.secrets import SecretBox

PROJECT = "acme"
#: Long enough for a delivery on an idle machine many times over; the tests wait for what they
#: expect and end as soon as it comes.
GENEROUS_S = 20.0


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        self.server.bodies.append(body)  # type: ignore[attr-defined]
        self.server.seen.append(self.headers["webhook-id"])  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[ThreadingHTTPServer]:
    """A receiver that answers 200 and keeps each delivery's id, in the order they came."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    srv.seen, srv.bodies = [], []  # type: ignore[attr-defined]
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


class Notifier:
    """One deliverer, running, with a webhook of ``PROJECT`` pointing at the receiver."""

    def __init__(self, store: EventStore, receiver: ThreadingHTTPServer) -> None:
        self.store, self.receiver = store, receiver
        self.box = SecretBox(os.urandom(32))
        guard = Guard(policy="private", local_ports=set(), local_addresses=set(), platform_endpoints=set())
        self.sender = Sender(guard, 30.0)  # timeouts are not what is tested here
        self.deliverer = Deliverer(
            store,
            self.box,
            self.sender,
            Health(store, disable_after=20),
            policy=RetryPolicy(base_s=0.2),
            concurrency=4,
            ack_wait=30,
        )
        self.webhook_id = new_id("whk")
        self.source_id = new_id("run")
        self.group_id = group_id(self.webhook_id, self.source_id)
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        url = f"http://127.0.0.1:{self.receiver.server_address[1]}/hook"
        secret = self.box.encrypt(PROJECT, f"webhook:{self.webhook_id}", new_secret())
        created = WebhookCreated(url=url, events=["*"], secret=secret)
        await self.append(created, aggregate_id=self.webhook_id)
        self.task = asyncio.create_task(self.deliverer.run(self.stop))

    async def close(self) -> None:
        self.stop.set()
        if self.task is not None:
            await self.task
        await self.sender.close()

    async def append(self, payload: Payload, aggregate_id: str | None = None) -> int:
        event = make_event(
            payload, project=PROJECT, aggregate_id=aggregate_id or self.group_id, event_id=new_id("evt")
        )
        return await self.store.append(event)

    async def queue(self, source_seq: int = 1) -> str:
        """A new delivery of the run (its event at ``source_seq``) to the webhook; its id."""
        dlv = new_id("dlv")
        await self.append(
            DeliveryQueued(
                webhook_id=self.webhook_id,
                delivery_id=dlv,
                event="run.succeeded",
                source_event_id=new_id("evt"),
                source_seq=source_seq,
                source_type="run.completed",
                source_aggregate="run",
                source_id=self.source_id,
            )
        )
        return dlv

    async def received(self, n: int) -> list[str]:
        """The first ``n`` deliveries the receiver got (fails the test if they do not come)."""
        deadline = time.monotonic() + GENEROUS_S
        seen: list[str] = self.receiver.seen  # type: ignore[attr-defined]
        while len(seen) < n:
            assert self.task is not None and not self.task.done(), "the deliverer ended"
            assert time.monotonic() < deadline, f"{len(seen)} of {n} deliveries came: {seen}"
            await asyncio.sleep(0.05)
        return seen[:n]


@pytest.fixture
async def notifier(store: EventStore, receiver: ThreadingHTTPServer) -> AsyncIterator[Notifier]:
    n = Notifier(store, receiver)
    await n.start()
    yield n
    await n.close()


def lagging_replica(store: EventStore, stale_answers: int) -> list[int]:
    """Have the next ``stale_answers`` reads of a delivery group that any replica may answer
    (``load`` without ``current``) come from a replica one event behind: the newest event of the
    group is not in them. A read with ``current`` always has it, as the store promises. Returns
    the list the stale answers' lengths go to."""
    real = store.load
    stale: list[int] = []

    async def load(
        project: str, aggregate: str, aggregate_id: str, *, types: str | None = None, current: bool = False
    ) -> list[Recorded]:
        history = await real(project, aggregate, aggregate_id, types=types, current=current)
        if aggregate != "delivery" or current or len(stale) >= stale_answers:
            return history
        stale.append(len(history) - 1)
        return history[:-1]

    store.load = load  # type: ignore[method-assign]
    return stale


async def test_a_fresh_delivery_read_from_a_replica_behind_is_sent_and_blocks_no_later_one(
    store: EventStore, notifier: Notifier
) -> None:
    # The replica does not have the delivery.queued the message is: read as "no such delivery"
    # it was acknowledged and lost, and every later delivery of the run waited behind it forever.
    stale = lagging_replica(store, stale_answers=1)
    first = await notifier.queue()
    assert await notifier.received(1) == [first]
    second = await notifier.queue()
    assert await notifier.received(2) == [first, second]
    assert stale == []  # what decides a delivery is never read from a replica that may be behind


async def test_a_redelivery_read_from_a_replica_behind_is_sent(store: EventStore, notifier: Notifier) -> None:
    first = await notifier.queue()
    assert await notifier.received(1) == [first]
    # The replica has the delivery as succeeded, not the request to send it again after it.
    lagging_replica(store, stale_answers=1)
    await notifier.append(DeliveryRedeliveryRequested(webhook_id=notifier.webhook_id, delivery_id=first))
    assert await notifier.received(2) == [first, first]


async def test_unreadable_events_among_the_deliveries_stop_no_later_delivery(
    store: EventStore, notifier: Notifier
) -> None:
    # A delivery event of a later crewyard, a type this one does not know, bytes that are not an
    # event at all: each is set aside, and the delivery after them is sent.
    before = sum(set_aside_counts().values())
    subject = f"{store.prefix}.{PROJECT}.delivery.{notifier.group_id}.delivery"
    valid = msgspec.json.decode(
        encode(
            make_event(
                DeliveryRedeliveryRequested(webhook_id=notifier.webhook_id, delivery_id=new_id("dlv")),
                project=PROJECT,
                aggregate_id=notifier.group_id,
                event_id=new_id("evt"),
            )
        )
    )
    newer = {**valid, "version": 99}  # from a later crewyard
    foreign = {**valid, "type": "delivery.teleported"}  # a type this one does not know
    for kind, event in (("redelivery_requested", newer), ("teleported", foreign)):
        await store.js.publish(f"{subject}.{kind}", msgspec.json.encode(event), stream=store.stream)
    await store.js.publish(f"{subject}.queued", b"{not json", stream=store.stream)
    after = await notifier.queue()
    assert await notifier.received(1) == [after]
    assert notifier.task is not None and not notifier.task.done()
    assert sum(set_aside_counts().values()) - before >= 3


async def test_the_body_is_made_from_the_runs_events_even_when_a_replica_lacks_them(
    store: EventStore, notifier: Notifier, receiver: ThreadingHTTPServer
) -> None:
    # The body is the run as it was at its event: read from a replica that does not have that
    # event yet, it was sent without it (an empty run), unlike every other attempt's bytes.
    seq = await notifier.append(
        RunQueued(deployment_id="dep_1", input={"topic": "x"}), aggregate_id=notifier.source_id
    )
    real = store.load_raw
    behind: list[str] = []

    async def load_raw(filter_subject: str, start_seq: int = 1, batch: int = 1000, **kw: Any) -> list[Any]:
        raws = await real(filter_subject, start_seq, batch, **kw)
        if ".run." in filter_subject and not behind:
            behind.append(filter_subject)
            return [raw for raw in raws if raw.seq < seq]
        return raws

    store.load_raw = load_raw  # type: ignore[method-assign]
    await notifier.queue(source_seq=seq)
    await notifier.received(1)
    assert behind, "the replica behind was never asked"
    sent = msgspec.json.decode(receiver.bodies[0])  # type: ignore[attr-defined]
    assert sent["data"]["run_id"] == notifier.source_id and sent["data"]["deployment_id"] == "dep_1"
