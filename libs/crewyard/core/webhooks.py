"""Outgoing webhooks as pure code: which stream events become which webhook events, the state of
a webhook and of a delivery group (folded from their events), and the retry policy.

Event mapping (webhook event name ← stream event type)::

    run.started          ← run.started      (again for each attempt after an infrastructure retry)
    run.succeeded        ← run.completed
    run.failed           ← run.failed
    run.canceled         ← run.canceled
    deployment.ready     ← deployment.ready
    deployment.failed    ← deployment.failed
    *                    every one of the above (run and deployment events)

``thread.checkpointed`` is refused (:data:`NOT_DELIVERED`): the notifier subscribes to run and
deployment events only and has no thread view to send (a thread's state may live in the object
store), so a subscription to it would silently receive nothing. Threads are followed with
``GET /v1/threads/{id}/events`` meanwhile; when thread events are delivered, ``*`` includes them.

Deliveries of one source aggregate (a run, a deployment) to one webhook form a *group*, an
aggregate of its own: a delivery is attempted only when every delivery of its group with an
earlier source sequence has ended, so a run's ``run.succeeded`` never arrives before its
``run.started``, while other runs (and other webhooks) go on independently.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

import msgspec

from crewyard.errors import CrewyardError

from .events import (
    DeliveryAttempted,
    DeliveryQueued,
    DeliveryRedeliveryRequested,
    Recorded,
    RunQueued,
    WebhookCreated,
    WebhookDeleted,
    WebhookDisabled,
    WebhookEnabled,
    WebhookSecretRotated,
    WebhookUpdated,
)
from .ids import derived_id

#: webhook event name → stream event type.
EVENT_MAP: dict[str, str] = {
    "run.started": "run.started",
    "run.succeeded": "run.completed",
    "run.failed": "run.failed",
    "run.canceled": "run.canceled",
    "deployment.ready": "deployment.ready",
    "deployment.failed": "deployment.failed",
}
WILDCARD = "*"
#: Event names the platform has but webhooks do not deliver yet → why, for the 400.
NOT_DELIVERED: dict[str, str] = {
    "thread.checkpointed": "thread events are not delivered by webhooks yet; follow a thread with "
    "GET /v1/threads/{id}/events",
}
#: stream event type → webhook event name.
NAME_OF: dict[str, str] = {source: name for name, source in EVENT_MAP.items()}


class InvalidWebhook(CrewyardError, ValueError):
    """A webhook configuration that cannot be accepted (the message says why)."""


def check_events(names: list[str]) -> list[str]:
    """The subscribed event names, checked, without duplicates, in a stable order."""
    if not names:
        raise InvalidWebhook("events must name at least one event (or '*' for all)")
    for name in names:
        if name in NOT_DELIVERED:
            raise InvalidWebhook(f"event {name!r} cannot be subscribed to: {NOT_DELIVERED[name]}")
    unknown = [n for n in names if n != WILDCARD and n not in EVENT_MAP]
    if unknown:
        known = ", ".join([*EVENT_MAP, WILDCARD])
        raise InvalidWebhook(f"unknown event {unknown[0]!r}; known: {known}")
    return sorted(set(names))


def webhook_event(stream_type: str) -> str | None:
    """The webhook event name a stream event type becomes, or None."""
    return NAME_OF.get(stream_type)


class WebhookConfig(msgspec.Struct, frozen=True, kw_only=True):
    url: str
    events: list[str]
    deployment: str | None = None
    description: str | None = None

    def wants(self, name: str, deployment_id: str, deployment_name: str | None) -> bool:
        if WILDCARD not in self.events and name not in self.events:
            return False
        if self.deployment is None:
            return True
        return self.deployment in (deployment_id, deployment_name)


class WebhookState(msgspec.Struct, kw_only=True):
    webhook_id: str
    project: str = ""
    version: int = 0
    created_seq: int = 0
    config: WebhookConfig | None = None
    enabled: bool = True
    deleted: bool = False
    disabled_reason: str | None = None
    #: Sequence of the creation or the last re-enabling: failure streaks count from here.
    enabled_since_seq: int = 0
    secret: str = ""
    previous_secret: str | None = None
    previous_valid_until: datetime | None = None
    #: (sequence, configuration in force after it; None while disabled or deleted).
    timeline: list[tuple[int, WebhookConfig | None]] = msgspec.field(default_factory=list)

    @property
    def exists(self) -> bool:
        return self.config is not None and not self.deleted

    def active_at(self, seq: int) -> WebhookConfig | None:
        """The configuration that applied to the stream event at ``seq`` (None: none did — the
        webhook did not exist yet, was disabled, or was deleted)."""
        current: WebhookConfig | None = None
        for at, config in self.timeline:
            if at >= seq:
                break
            current = config
        return current

    def signing_secrets(self, now: datetime) -> list[str]:
        """The encrypted secrets to sign with now: the current one, and the previous one during
        its grace period after a rotation."""
        out = [self.secret]
        if self.previous_secret and self.previous_valid_until and now < self.previous_valid_until:
            out.append(self.previous_secret)
        return out


def evolve_webhook(state: WebhookState, rec: Recorded) -> WebhookState:
    data = rec.event.data
    state.version = rec.seq
    state.project = rec.event.project
    if isinstance(data, WebhookCreated | WebhookUpdated):
        state.config = WebhookConfig(
            url=data.url, events=list(data.events), deployment=data.deployment, description=data.description
        )
        if isinstance(data, WebhookCreated):
            state.secret, state.created_seq, state.enabled_since_seq = data.secret, rec.seq, rec.seq
    elif isinstance(data, WebhookSecretRotated):
        state.previous_secret, state.secret = state.secret, data.secret
        state.previous_valid_until = data.previous_valid_until
    elif isinstance(data, WebhookDisabled):
        state.enabled, state.disabled_reason = False, data.reason
    elif isinstance(data, WebhookEnabled):
        state.enabled, state.disabled_reason, state.enabled_since_seq = True, None, rec.seq
    elif isinstance(data, WebhookDeleted):
        state.deleted = True
    else:
        return state
    state.timeline.append((rec.seq, state.config if state.enabled and not state.deleted else None))
    return state


def fold_webhook(webhook_id: str, history: list[Recorded]) -> WebhookState:
    state = WebhookState(webhook_id=webhook_id)
    for rec in history:
        evolve_webhook(state, rec)
    return state


# -- deliveries ------------------------------------------------------------------------------

Status = Literal["pending", "succeeded", "failed"]


def group_id(webhook_id: str, source_id: str) -> str:
    """The delivery group of one source aggregate (run, deployment) and one webhook."""
    return derived_id("dlg", 0, webhook_id, source_id)


def delivery_id(webhook_id: str, source_event_id: str, source_time: datetime) -> str:
    """Stable: the same event to the same webhook always has the same delivery id."""
    return derived_id("dlv", int(source_time.timestamp() * 1000), webhook_id, source_event_id)


class DeliveryState(msgspec.Struct, kw_only=True):
    delivery_id: str
    webhook_id: str
    event: str
    source_event_id: str
    source_seq: int
    source_type: str
    source_aggregate: str
    source_id: str
    queued_at: datetime
    status: Status = "pending"
    attempts: int = 0
    #: Attempts since the delivery was (re)queued, and when that series began.
    series_attempts: int = 0
    series_started_at: datetime | None = None
    next_attempt_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None


class GroupState(msgspec.Struct, kw_only=True):
    group_id: str
    project: str = ""
    version: int = 0
    deliveries: dict[str, DeliveryState] = msgspec.field(default_factory=dict)

    def blocker(self, delivery: DeliveryState) -> DeliveryState | None:
        """The earliest unfinished delivery of this group that must arrive before ``delivery``."""
        earlier = [
            d
            for d in self.deliveries.values()
            if d.status == "pending" and d.source_seq < delivery.source_seq
        ]
        return min(earlier, key=lambda d: d.source_seq) if earlier else None

    def queued_sources(self) -> set[str]:
        return {d.source_event_id for d in self.deliveries.values()}


def evolve_group(state: GroupState, rec: Recorded) -> GroupState:
    data = rec.event.data
    state.version = rec.seq
    state.project = rec.event.project
    if isinstance(data, DeliveryQueued):
        if data.delivery_id not in state.deliveries:  # a repeated decision changes nothing
            state.deliveries[data.delivery_id] = DeliveryState(
                delivery_id=data.delivery_id,
                webhook_id=data.webhook_id,
                event=data.event,
                source_event_id=data.source_event_id,
                source_seq=data.source_seq,
                source_type=data.source_type,
                source_aggregate=data.source_aggregate,
                source_id=data.source_id,
                queued_at=rec.event.time,
            )
    elif isinstance(data, DeliveryAttempted):
        d = state.deliveries.get(data.delivery_id)
        if d is not None:
            d.attempts += 1
            d.series_attempts += 1
            d.series_started_at = d.series_started_at or rec.event.time
            d.status = "pending" if data.outcome == "retrying" else data.outcome
            d.next_attempt_at = data.next_attempt_at
            d.last_status_code, d.last_error = data.status_code, data.error
    elif isinstance(data, DeliveryRedeliveryRequested):
        d = state.deliveries.get(data.delivery_id)
        if d is not None:
            d.status, d.series_attempts, d.series_started_at, d.next_attempt_at = "pending", 0, None, None
    return state


def fold_group(gid: str, history: list[Recorded]) -> GroupState:
    state = GroupState(group_id=gid)
    for rec in history:
        evolve_group(state, rec)
    return state


# -- retries ---------------------------------------------------------------------------------


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Exponential backoff with jitter: attempt n waits between half and all of
    ``min(cap_s, base_s * 2**(n-1))``; a receiver's ``Retry-After`` replaces that wait. Retries
    stop once the next attempt would start more than ``window_s`` after the first."""

    base_s: float = 2.0
    cap_s: float = 3600.0
    window_s: float = 86400.0


Verdict = Literal["success", "retry", "final"]


def classify(status_code: int | None) -> Verdict:
    """None: no answer (timeout, connection refused or reset) — worth another try."""
    if status_code is None:
        return "retry"
    if 200 <= status_code < 300:
        return "success"
    if status_code in (408, 429) or status_code >= 500:
        return "retry"
    return "final"  # other 4xx, and 3xx: redirects are never followed


def after_attempt(
    delivery: DeliveryState,
    *,
    now: datetime,
    status_code: int | None,
    retry_after_s: float | None,
    policy: RetryPolicy,
    jitter: float,
) -> tuple[Literal["succeeded", "retrying", "failed"], datetime | None]:
    """The outcome of an attempt that just ended, and when to try next. ``jitter`` in [0, 1)."""
    verdict = classify(status_code)
    if verdict == "success":
        return "succeeded", None
    if verdict == "final":
        return "failed", None
    n = delivery.series_attempts + 1
    if retry_after_s is not None:
        # The receiver's wait, within the policy's: never sooner than its first step (0 would be
        # a request a millisecond, all day), never later than its cap.
        wait = min(max(retry_after_s, policy.base_s), policy.cap_s)
    else:
        top = min(policy.cap_s, policy.base_s * 2 ** min(n - 1, 60))
        wait = top / 2 + jitter * top / 2
    started = delivery.series_started_at or now
    nxt = now + timedelta(seconds=wait)
    if (nxt - started).total_seconds() > policy.window_s:
        return "failed", None
    return "retrying", nxt


# -- dispatch --------------------------------------------------------------------------------


def plan_deliveries(
    source: list[Recorded],
    upto_seq: int,
    webhook: WebhookState,
    group: GroupState,
    deployment_name: str | None = None,
) -> list[DeliveryQueued]:
    """The deliveries to queue for ``webhook`` once the source aggregate's event at ``upto_seq``
    is stored: one per mapped event up to it that the webhook wanted when it was stored and that
    its group does not hold yet — earlier ones first, so a group is always complete up to its
    newest delivery, whichever event a dispatcher happened to see first.

    ``source`` is the source aggregate's lifecycle history (a run's ``run.*`` events, a
    deployment's ``deployment.*``)."""
    have = group.queued_sources()
    deployment_id = ""
    out: list[DeliveryQueued] = []
    for rec in source:
        e = rec.event
        if isinstance(e.data, RunQueued):
            deployment_id = e.data.deployment_id
        elif e.aggregate == "deployment":
            deployment_id = e.aggregate_id
        if rec.seq > upto_seq:
            break
        name = webhook_event(e.type)
        config = webhook.active_at(rec.seq) if name else None
        if name is None or config is None or e.id in have:
            continue
        if not config.wants(name, deployment_id, deployment_name):
            continue
        out.append(
            DeliveryQueued(
                webhook_id=webhook.webhook_id,
                delivery_id=delivery_id(webhook.webhook_id, e.id, e.time),
                event=name,
                source_event_id=e.id,
                source_seq=rec.seq,
                source_type=e.type,
                source_aggregate=e.aggregate,
                source_id=e.aggregate_id,
            )
        )
    return out
