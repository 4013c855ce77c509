"""Durable pull consumers shared by every instance of a service (builder, runner).

JetStream hands each message to one puller, so work spreads across processes and machines
with no coordination of ours. A message not acknowledged within ``ack_wait`` (kept alive with
``in_progress`` while a long job runs) goes to another instance: that is how a crashed worker's
job is found again.

A message that is not a valid event (see ``crewyard.core.events.decode``) is terminated here,
set aside, and never handed out: redelivering it would only fail again, forever.
"""

from __future__ import annotations

import contextlib

import msgspec
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext

from crewyard.core.events import InvalidEvent

from ._errors import StoreUnavailable
from ._poison import set_aside
from ._raw import RawEvent
from ._store import EventStore


class WorkItem(msgspec.Struct):
    event: RawEvent
    deliveries: int
    msg: Msg

    async def ack(self) -> None:
        with contextlib.suppress(Exception):
            await self.msg.ack()

    async def nak(self, delay: float | None = None) -> None:
        with contextlib.suppress(Exception):
            await self.msg.nak(delay=delay)

    async def in_progress(self) -> None:
        with contextlib.suppress(Exception):
            await self.msg.in_progress()

    async def term(self) -> None:
        with contextlib.suppress(Exception):
            await self.msg.term()


class WorkQueue:
    def __init__(
        self,
        store: EventStore,
        durable: str,
        filter_subject: str,
        *,
        ack_wait: float = 30.0,
        max_deliver: int = 5,
        max_ack_pending: int = 10_000,
    ) -> None:
        self.store = store
        self.durable = durable
        self.filter_subject = filter_subject
        self.ack_wait = ack_wait
        self.max_deliver = max_deliver
        #: Messages handed out and not yet acknowledged, over every instance, before the server
        #: hands out no more (-1: no bound). A queue whose messages wait unacknowledged on
        #: purpose (``nak`` with a delay) must not keep one: waiting ones would stop the rest.
        self.max_ack_pending = max_ack_pending
        self._sub: JetStreamContext.PullSubscription | None = None

    async def start(self) -> None:
        # add_consumer creates or updates; pull_subscribe alone would ignore changed settings.
        config = ConsumerConfig(
            durable_name=self.durable,
            filter_subject=self.filter_subject,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self.ack_wait,
            max_deliver=self.max_deliver,
            max_ack_pending=self.max_ack_pending,
        )
        try:
            await self.store.js.add_consumer(self.store.stream, config)
            self._sub = await self.store.js.pull_subscribe_bind(self.durable, stream=self.store.stream)
        except Exception as exc:
            raise StoreUnavailable(f"cannot bind work consumer {self.durable}: {exc!r}") from exc

    async def close(self) -> None:
        """Let go of the subscription (the durable consumer stays for the other instances)."""
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def backlog(self) -> tuple[int, int]:
        """(messages not yet delivered, messages delivered and not yet acknowledged) of the
        durable consumer: its lag, for metrics."""
        try:
            info = await self.store.js.consumer_info(self.store.stream, self.durable)
        except Exception as exc:
            raise StoreUnavailable(f"cannot read work consumer {self.durable}: {exc!r}") from exc
        return int(info.num_pending or 0), int(info.num_ack_pending or 0)

    async def fetch(self, batch: int = 1, timeout: float = 1.0) -> list[WorkItem]:
        if self._sub is None:
            await self.start()
        assert self._sub is not None
        try:
            msgs = await self._sub.fetch(batch, timeout=timeout)
        except (NatsTimeout, TimeoutError):
            return []
        except Exception:
            # Consumer lost (server restart, leader change): bind again on the next call.
            self._sub = None
            return []
        items = []
        for m in msgs:
            raw = RawEvent(m.metadata.sequence.stream, m.subject, m.data)
            item = WorkItem(raw, m.metadata.num_delivered, m)
            try:
                item.event.decode(self.store.prefix)
            except InvalidEvent as exc:
                set_aside(f"{self.durable} queue", item.event.seq, item.event.subject, exc)
                await item.term()
                continue
            items.append(item)
        return items
