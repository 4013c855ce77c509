"""Delivery: every queued delivery attempted, retried and recorded, one lane per webhook.

Every notifier instance pulls from one durable consumer (``notifier-deliveries``) and routes each
delivery to its webhook's lane; a lane sends at most ``CREWYARD_WEBHOOK_CONCURRENCY`` requests at
once, so a slow receiver only ever occupies its own lane. A lane holds a bounded backlog; beyond
it, deliveries go back to the server for a few seconds (``nak`` with a delay) instead of taking
memory and the instance's share of the consumer from other webhooks.

A delivery is attempted only when no earlier delivery of its group (same webhook, same run) is
still pending, so a run's events arrive in order; a blocked one comes back when its blocker is
due. Retries are ``nak`` with the backoff as delay, so they survive restarts and move to another
instance if this one dies; every attempt is a ``delivery.attempted`` event. A message is
acknowledged only once its delivery has ended: killing a notifier mid-request means the request
is made again — with the same delivery id. Whether it has ended is read from the stream as it is
now (``current``), never from a replica that may be behind: acknowledging on such a read loses a
delivery that was only too new for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

import msgspec

from crewyard.aggregate_index import AggregateIndex
from crewyard.core import subjects, views
from crewyard.core.events import (
    DeliveryAttempted,
    DeliveryQueued,
    DeliveryRedeliveryRequested,
    InvalidEvent,
    make_event,
)
from crewyard.core.ids import new_id
from crewyard.core.signing import delivery_headers
from crewyard.core.webhooks import (
    DeliveryState,
    RetryPolicy,
    WebhookState,
    after_attempt,
    evolve_webhook,
    fold_group,
)
from crewyard.counts import adjust
from crewyard.eventstore import EventStore, StoreUnavailable, WorkItem, WorkQueue, set_aside
from crewyard.secrets import SecretBox, SecretError
from crewyard.servicekit import unless_stopped
from crewyard.versions import load_versions

from .health import Health
from .sender import Sender

log = logging.getLogger("crewyard.notifier")
READER = "notifier delivery"
#: Deliveries a lane keeps waiting in memory before sending more back to the server for a while.
LANE_BACKLOG = 64
#: Messages one instance holds at once (waiting in lanes or being sent), and one project's lanes.
MAX_HELD = 2000
PROJECT_HELD = MAX_HELD // 4
#: A success faster than this lets a lane send one more request at once; an answer slower than
#: SLOW_MS (or a failure) halves it.
QUICK_MS, SLOW_MS = 500, 1000
_json = msgspec.json.Encoder()


def _secret_name(webhook_id: str) -> str:
    return f"webhook:{webhook_id}"  # as the gateway sealed it


class Lane:
    """One webhook's deliveries in this instance. How many requests it sends at once adapts to
    the receiver (additive increase, multiplicative decrease): one more after each quick
    success, half as many after a slow answer or a failure, between 1 and the configured maximum.
    A receiver that struggles is not pushed harder, and holds only its own lane."""

    def __init__(self, owner: Deliverer, webhook_id: str, project: str = "") -> None:
        self.owner, self.webhook_id, self.project = owner, webhook_id, project
        self.waiting: deque[WorkItem] = deque()
        self.workers = 0
        self.limit = 1.0
        #: Messages this lane holds: waiting, or being sent.
        self.held = 0

    def push(self, item: WorkItem) -> None:
        self.take(item)
        self._spawn()

    def take(self, item: WorkItem) -> None:
        """Hold ``item`` until a worker sends it (:meth:`push` also starts one)."""
        self.waiting.append(item)
        self._count(1)

    def _count(self, delta: int) -> None:
        before, self.held = self.held, self.held + delta
        self.owner.lane_changed(self, before)

    def feedback(self, ok: bool, latency_ms: int) -> None:
        if ok and latency_ms < QUICK_MS:
            self.limit = min(float(self.owner.concurrency), self.limit + 1)
        elif not ok or latency_ms >= SLOW_MS:
            self.limit = max(1.0, self.limit / 2)
        self._spawn()

    def _spawn(self) -> None:
        while self.waiting and self.workers < int(self.limit):
            self.workers += 1
            task = asyncio.create_task(self._work())
            self.owner.tasks.add(task)
            task.add_done_callback(self.owner.tasks.discard)

    async def _work(self) -> None:
        try:
            while self.waiting and self.workers <= int(self.limit):
                item = self.waiting.popleft()
                try:
                    await self.owner.process(item, self)
                except Exception:  # a fault of ours, not an attempt's answer: tried again, ever later
                    delay = min(5.0 * 2 ** min(item.deliveries - 1, 10), 3600.0)
                    log.exception("delivery of %s failed; tried again in %.0f s", item.event.subject, delay)
                    await item.nak(delay=delay)
                finally:
                    self.owner.held.pop(id(item), None)
                    self._count(-1)
        finally:
            self.workers -= 1


class Deliverer:
    def __init__(
        self,
        store: EventStore,
        secrets: SecretBox,
        sender: Sender,
        health: Health,
        *,
        policy: RetryPolicy,
        concurrency: int,
        ack_wait: float,
    ) -> None:
        self.store, self.secrets, self.sender, self.health = store, secrets, sender, health
        self.policy, self.concurrency, self.ack_wait = policy, concurrency, ack_wait
        self.queue = WorkQueue(
            store,
            "notifier-deliveries",
            f"{store.prefix}.*.delivery.*.delivery.*",
            ack_wait=ack_wait,
            max_deliver=-1,  # retries are counted in the delivery's own events
            # A delivery waiting for its retry, its blocker or room in a lane stays unacknowledged
            # (``nak`` with a delay, up to an hour, for a day): with a bound, one project's
            # waiting deliveries (10,000 of them) stopped the server handing any other delivery
            # to any instance. What an instance holds in memory is bounded by its own limits
            # (MAX_HELD, PROJECT_HELD, the lanes' backlogs), never by this.
            max_ack_pending=-1,
        )
        self.webhooks: AggregateIndex[WebhookState] = AggregateIndex(
            store, "webhook", lambda i: WebhookState(webhook_id=i), evolve_webhook, reader=READER
        )
        self.lanes: dict[str, Lane] = {}
        #: What the lanes hold, kept as they change (deciding room for each message routed must
        #: not walk every lane): per project, and how many lanes hold anything.
        self.project_held: dict[str, int] = {}
        self.busy = 0
        #: Messages waiting in a lane or being sent, by ``id()`` (they are kept alive).
        self.held: dict[int, WorkItem] = {}
        self.sending: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:  # the broker may be slow to answer at start-up: wait for it, do not die
                await unless_stopped(self.queue.start(), stop)
                break
            except StoreUnavailable as exc:
                log.warning("cannot bind the delivery consumer yet (%s); retrying", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 2.0)
        beat = asyncio.create_task(self._keep_alive())
        try:
            while not stop.is_set():
                room = MAX_HELD - len(self.held)
                if room <= 0:
                    await asyncio.sleep(0.05)
                    continue
                try:
                    # Given up at a stop like a crash would: what it took is delivered again.
                    items = await unless_stopped(self.queue.fetch(min(100, room), timeout=1.0), stop) or []
                except StoreUnavailable:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 1.0)
                    continue
                for item in items:
                    await self._route(item)
        finally:
            beat.cancel()
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            await self.queue.close()

    async def _keep_alive(self) -> None:
        """Messages waiting in a lane or being sent stay ours: tell the server, well within
        ack_wait. Webhook changes (disabled, deleted, a new URL or secret) are read every second."""
        beat = time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            with contextlib.suppress(Exception):
                await self.webhooks.refresh()
            if time.monotonic() - beat >= self.ack_wait / 4:
                beat = time.monotonic()
                for item in list(self.held.values()):
                    await item.in_progress()

    async def _route(self, item: WorkItem) -> None:
        try:
            event = item.event.decode(self.store.prefix).event
        except InvalidEvent as exc:
            # The work queue sets these aside before handing anything out; should one ever come
            # through, it is set aside here too: raised, it would end this instance's delivery,
            # then the next instance's, each time the message went back.
            set_aside(READER, item.event.seq, item.event.subject, exc)
            await item.term()
            return
        data = event.data
        if not isinstance(data, DeliveryQueued | DeliveryRedeliveryRequested):
            await item.ack()  # an attempt record: nothing to do
            return
        lane = self.lanes.get(data.webhook_id)
        if lane is None:
            lane = self.lanes[data.webhook_id] = Lane(self, data.webhook_id, event.project)
        if not self.room_for(lane):
            await item.nak(delay=2.0 + 3.0 * random.random())
            return
        self.held[id(item)] = item
        lane.push(item)

    def room_for(self, lane: Lane) -> bool:
        """Whether ``lane`` may hold one more message. Up to its backlog while it is one of few
        busy lanes; its share of half of ``MAX_HELD`` among many; once the instance holds half
        of that, only a lane that holds nothing; and never past a quarter of the instance for
        one project's lanes together. Receivers that never answer (a few dozen of them filled
        the instance before, and it fetched nothing for any other webhook) so hold at most what
        their projects may, and another project's webhook still has room."""
        if self.project_held.get(lane.project, 0) >= PROJECT_HELD:
            return False
        if lane.held == 0:
            return True
        if len(self.held) >= MAX_HELD // 2:
            return False
        return lane.held < max(1, min(LANE_BACKLOG, MAX_HELD // 2 // max(1, self.busy)))

    def lane_changed(self, lane: Lane, before: int) -> None:
        """``lane`` held ``before`` messages and holds ``lane.held`` now."""
        adjust(self.project_held, lane.project, lane.held - before)
        self.busy += (lane.held > 0) - (before > 0)

    async def process(self, item: WorkItem, lane: Lane) -> None:
        rec = item.event.decode(self.store.prefix)
        data = rec.event.data
        assert isinstance(data, DeliveryQueued | DeliveryRedeliveryRequested)
        project, gid = rec.event.project, rec.event.aggregate_id
        # Read from the stream as it is now, not from whichever replica answers: one behind
        # lacks this very message's delivery.queued (or redelivery_requested) and shows the
        # delivery missing or ended, and acknowledging on that loses it for good, and every
        # later delivery of the run waits behind it forever.
        group = fold_group(gid, await self.store.load(project, "delivery", gid, current=True))
        if group.version < item.event.seq:  # never, read as current; if ever: not decided on
            await item.nak(delay=1.0)
            return
        delivery = group.deliveries.get(data.delivery_id)
        if delivery is None or delivery.status != "pending" or delivery.delivery_id in self.sending:
            await item.ack()  # ended already, or being sent by this instance under another message
            return
        now = datetime.now(UTC)
        blocker = group.blocker(delivery)
        if blocker is not None:
            due = (blocker.next_attempt_at - now).total_seconds() if blocker.next_attempt_at else 0.0
            await item.nak(delay=min(60.0, max(0.5, due)))
            return
        if delivery.next_attempt_at and delivery.next_attempt_at > now:
            await item.nak(delay=(delivery.next_attempt_at - now).total_seconds())
            return
        # Every webhook change appended before this request is applied first (an "enable" sent
        # just before a redelivery must count); later ones are picked up every second, and a
        # webhook that looks disabled or unknown is read again before anything is decided.
        await self.webhooks.up_to(item.event.seq)
        webhook = self.webhooks.items.get(delivery.webhook_id)
        if webhook is None or not webhook.enabled:
            await self.webhooks.refresh()
            webhook = self.webhooks.items.get(delivery.webhook_id)
        if webhook is None or not webhook.exists:
            await item.ack()  # deleted: nothing more goes to it
            return
        self.sending.add(delivery.delivery_id)
        try:
            retry_in = await self._attempt(project, gid, webhook, delivery, lane)
        finally:
            self.sending.discard(delivery.delivery_id)
        if retry_in is None:
            await item.ack()
        else:
            await item.nak(delay=retry_in)

    async def _attempt(
        self, project: str, gid: str, webhook: WebhookState, d: DeliveryState, lane: Lane
    ) -> float | None:
        """Send once and record it; seconds until the next attempt, or None when it has ended."""
        assert webhook.config is not None
        now = datetime.now(UTC)
        if not webhook.enabled:
            error = f"webhook disabled: {webhook.disabled_reason or ''}".strip()
            await self._record(project, gid, d, "failed", None, error=error)
            return None
        try:
            body = await self._body(project, d)
            secrets = [
                self.secrets.decrypt(project, _secret_name(webhook.webhook_id), s)
                for s in webhook.signing_secrets(now)
            ]
        except SecretError as exc:  # the platform's key changed: nothing can sign this
            await self._record(project, gid, d, "failed", None, error=str(exc))
            return None
        headers = delivery_headers(
            secrets, delivery_id=d.delivery_id, event=d.event, timestamp=int(now.timestamp()), body=body
        )
        result = await self.sender.post(webhook.config.url, headers, body)
        ok = result.status_code is not None and 200 <= result.status_code < 300
        lane.feedback(ok, result.latency_ms)
        outcome, nxt = after_attempt(
            d,
            now=datetime.now(UTC),
            status_code=result.status_code,
            retry_after_s=result.retry_after_s,
            policy=self.policy,
            jitter=random.random(),
        )
        if result.refused:
            outcome, nxt = "failed", None
        await self._record(
            project,
            gid,
            d,
            outcome,
            result.status_code,
            error=result.error,
            latency_ms=result.latency_ms,
            excerpt=result.excerpt,
            next_attempt_at=nxt,
        )
        if outcome != "retrying":
            with contextlib.suppress(Exception):  # bookkeeping must not fail the delivery
                await self.health.record(webhook, outcome, result.error or f"HTTP {result.status_code}")
            return None
        assert nxt is not None
        return max(0.0, (nxt - datetime.now(UTC)).total_seconds())

    async def _record(
        self,
        project: str,
        gid: str,
        d: DeliveryState,
        outcome: Any,
        status_code: int | None,
        *,
        error: str | None,
        latency_ms: int = 0,
        excerpt: str = "",
        next_attempt_at: datetime | None = None,
    ) -> None:
        payload = DeliveryAttempted(
            webhook_id=d.webhook_id,
            delivery_id=d.delivery_id,
            attempt=d.attempts + 1,
            outcome=outcome,
            status_code=status_code,
            error=None if error is None else error[:500],
            latency_ms=latency_ms,
            response_excerpt=excerpt,
            next_attempt_at=next_attempt_at,
        )
        event = make_event(payload, project=project, aggregate_id=gid, event_id=new_id("evt"))
        await self.store.append(event)

    async def _body(self, project: str, d: DeliveryState) -> bytes:
        """``{"type", "timestamp", "data"}``: the run (or deployment) as the API showed it when the
        event was stored, so every attempt sends the same bytes."""
        agg = d.source_aggregate
        filt = subjects.aggregate_filter(project, agg, d.source_id, self.store.prefix)[:-1] + f"{agg}.*"
        raws = await self.store.load_raw(filt)
        if not any(raw.seq == d.source_seq for raw in raws):  # a replica behind: the stream as it is
            raws = await self.store.load_raw_current(filt)
        history = []
        for raw in raws:
            if raw.seq > d.source_seq:
                break
            try:
                history.append(raw.decode(self.store.prefix))
            except InvalidEvent as exc:
                set_aside(READER, raw.seq, raw.subject, exc)
        if agg == "run":
            view = views.run_view(history)
        else:  # a version's number is its place among its name's versions: counted over the project
            version = (await load_versions(self.store, project)).versions.get(d.source_id)
            view = views.deployment_view(history, version.number if version else None)
        at = next((r.event.time for r in history if r.seq == d.source_seq), d.queued_at)
        return _json.encode({"type": d.event, "timestamp": at.isoformat(), "data": view})
