"""Dispatch: every run or deployment lifecycle event → the deliveries it makes, queued as events.

For the event at sequence S of a run, every webhook of the project that wanted it gets a
``delivery.queued`` in its delivery group (webhook and run), appended with the group's expected
sequence and after any earlier delivery of that run the group is still missing; the group is
therefore complete up to its newest delivery whatever order dispatchers work in, and the
delivery side can keep each run in order by looking at the group alone. Nothing is delivered
here: this step only writes events, so it is quick and one slow receiver cannot hold it up.

The two subscribers (runs, deployments) are FastStream pull subscribers on durables every
notifier instance shares; a message is acknowledged once its deliveries are stored, and a failure
leaves it to be delivered again (``NACK_ON_ERROR``), which is harmless: the plan is computed from
the stream, and what is already queued is not queued twice. FastStream hands over the messages of
one fetch at once; an instance takes each run's events in stream order (``handle_in_order``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from faststream import AckPolicy
from faststream.nats import JStream, NatsBroker, NatsMessage, PullSub
from nats.js import api
from nats.js.api import ConsumerConfig, DeliverPolicy

from crewyard.aggregate_index import AggregateIndex
from crewyard.core import subjects
from crewyard.core.events import DeploymentCreated, InvalidEvent, Recorded, make_event
from crewyard.core.ids import derived_id
from crewyard.core.webhooks import (
    GroupState,
    WebhookState,
    evolve_group,
    evolve_webhook,
    fold_group,
    group_id,
    plan_deliveries,
    webhook_event,
)
from crewyard.errors import CrewyardError
from crewyard.eventstore import ConcurrencyConflict, EventStore, RawEvent, set_aside
from crewyard.keyedlock import KeyedLock

log = logging.getLogger("crewyard.notifier")
READER = "notifier dispatch"
GROUP_CACHE = 10_000
#: The durables, and the lifecycle events each receives (``*``: project and id).
SOURCES = {
    "notifier-runs": ("run", "run.*"),
    "notifier-deployments": ("deployment", "deployment.*"),
}


class StaleRead(CrewyardError):
    """The source event is not visible in its aggregate yet (a lagging replica): try again."""


class Dispatcher:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.webhooks: AggregateIndex[WebhookState] = AggregateIndex(
            store, "webhook", lambda i: WebhookState(webhook_id=i), evolve_webhook, reader=READER
        )
        self._dep_names: dict[str, str | None] = {}
        #: Delivery groups this instance wrote last, most recent last (a bounded cache).
        self._groups: dict[str, GroupState] = {}
        #: A lock per source aggregate (run or deployment) while its events are being handled.
        self._sources = KeyedLock()

    async def handle_in_order(self, raw: RawEvent) -> int:
        """:meth:`handle`, after any earlier event of the same run (or deployment) this instance
        is still handling: events handed over together start in stream order, and waiters on an
        ``asyncio.Lock`` are served first come, first served. Other instances may still see a
        run's events in another order, which :meth:`_queue` allows for."""
        async with self._sources.hold(raw.subject.rsplit(".", 2)[0]):
            return await self.handle(raw)

    async def handle(self, raw: RawEvent) -> int:
        """Queue the deliveries ``raw`` makes; returns how many were queued."""
        try:
            rec = raw.decode(self.store.prefix)
        except InvalidEvent as exc:
            set_aside(READER, raw.seq, raw.subject, exc)
            return 0
        if webhook_event(rec.event.type) is None:
            return 0
        await self.webhooks.up_to(rec.seq)
        project = rec.event.project
        hooks = [
            w
            for w in self.webhooks.items.values()
            if w.project == project and w.active_at(rec.seq) is not None
        ]
        if not hooks:
            return 0
        source = await self._lifecycle(rec)
        if all(r.seq != rec.seq for r in source):
            raise StaleRead(f"event {rec.seq} not yet visible in {rec.event.aggregate_id}")
        dep_name = await self._deployment_name(project, source)
        return sum([await self._queue(w, source, rec.seq, dep_name) for w in hooks])

    async def _lifecycle(self, rec: Recorded) -> list[Recorded]:
        e = rec.event
        filt = f"{subjects.aggregate_filter(e.project, e.aggregate, e.aggregate_id, self.store.prefix)[:-1]}"
        out = []
        for raw in await self.store.load_raw(f"{filt}{e.aggregate}.*"):
            try:
                out.append(raw.decode(self.store.prefix))
            except InvalidEvent as exc:
                set_aside(READER, raw.seq, raw.subject, exc)
        return out

    async def _deployment_name(self, project: str, source: list[Recorded]) -> str | None:
        """The name of the source's deployment, for webhooks that filter by name."""
        dep_id = next(
            (
                str(getattr(r.event.data, "deployment_id", r.event.aggregate_id))
                for r in source
                if r.event.type in ("run.queued", "deployment.created")
            ),
            None,
        )
        if dep_id is None:
            return None
        if dep_id not in self._dep_names:
            history = await self.store.load_raw(
                f"{subjects.aggregate_filter(project, 'deployment', dep_id, self.store.prefix)[:-1]}"
                "deployment.created"
            )
            name = None
            for raw in history[:1]:
                # Unreadable, it is set aside like any other here: raising would redeliver the
                # run's event at once, forever, and queue no delivery of that deployment's runs.
                try:
                    with_name = raw.decode(self.store.prefix).event.data
                except InvalidEvent as exc:
                    set_aside(READER, raw.seq, raw.subject, exc)
                    continue
                name = with_name.name if isinstance(with_name, DeploymentCreated) else None
            self._dep_names[dep_id] = name
        return self._dep_names[dep_id]

    async def _queue(
        self, webhook: WebhookState, source: list[Recorded], upto: int, dep_name: str | None
    ) -> int:
        gid = group_id(webhook.webhook_id, source[0].event.aggregate_id)
        project = source[0].event.project
        # A group this instance has not written is most likely new: plan on that, and read it
        # only when the append says otherwise (one request instead of two per delivery).
        known = self._groups.pop(gid, None)
        group = known if known is not None else fold_group(gid, [])
        for _ in range(10):
            planned = plan_deliveries(source, upto, webhook, group, dep_name)
            version = group.version
            try:
                for payload in planned:
                    event = make_event(
                        payload,
                        project=project,
                        aggregate_id=gid,
                        event_id=derived_id("evt", 0, "delivery.queued", payload.delivery_id),
                    )
                    version = await self.store.append(event, expected_seq=version)
                    evolve_group(group, Recorded(version, event))
            except ConcurrencyConflict:
                # Another dispatcher queued some of them: read the group and plan again.
                group = fold_group(gid, await self.store.load(project, "delivery", gid))
                continue
            self._remember(gid, group)
            return len(planned)
        raise ConcurrencyConflict(f"delivery group {gid} kept changing")

    def _remember(self, gid: str, group: GroupState) -> None:
        self._groups[gid] = group
        while len(self._groups) > GROUP_CACHE:
            self._groups.pop(next(iter(self._groups)))


Handler = Callable[[RawEvent], Awaitable[int]]


def subscribe(
    broker: NatsBroker,
    handle: Handler,
    *,
    stream: str,
    prefix: str,
    ack_wait: float = 30.0,
    inbox_prefix: str | None = None,
) -> None:
    """One pull subscriber per source family, each on a durable shared by every instance.
    ``inbox_prefix``: where the broker's NATS user may receive (FastStream's subscribers do not
    take it from the connection)."""
    inbox = f"{inbox_prefix}.".encode() if inbox_prefix else api.INBOX_PREFIX
    jstream = JStream(stream, declare=False)  # the event store declares and checks it
    for durable, (aggregate, types) in SOURCES.items():

        async def on_event(body: Any, msg: NatsMessage) -> None:
            m = msg.raw_message
            await handle(RawEvent(_seq(m), m.subject, m.data))

        broker.subscriber(
            f"{prefix}.*.{aggregate}.*.{types}",
            stream=jstream,
            durable=durable,
            # One handler call per message, those of a fetch at once. Not batch=True: its fetch
            # loop drops what it has fetched when nats-py ends a later fetch of the same batch
            # with a plain TimeoutError (on a busy event loop: 1 message in 7), and those come
            # back only after ack_wait. Not max_workers > 1 either: it over-fetches and
            # redelivers (faststream#2563).
            pull_sub=PullSub(batch_size=64, timeout=1.0),
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.ALL, ack_wait=ack_wait, max_deliver=-1, max_ack_pending=1000
            ),
            ack_policy=AckPolicy.NACK_ON_ERROR,
            decoder=_undecoded,
            include_in_schema=False,
            inbox_prefix=inbox,
        )(on_event)


def _undecoded(msg: NatsMessage) -> bytes:
    """The body as stored: the dispatcher decodes (and sets aside what it cannot). FastStream's
    own decoder would raise on a body that is not what its headers claim, before the handler,
    and the message would come back forever."""
    return bytes(msg.body)


def _seq(raw_msg: Any) -> int:
    try:
        return int(raw_msg.metadata.sequence.stream)
    except Exception:  # an in-memory test broker's message has no JetStream metadata
        return 0
