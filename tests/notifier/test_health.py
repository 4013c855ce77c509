"""The failure streak shared by every notifier instance (its KV bucket on the real server)."""

from __future__ import annotations

import msgspec

from crewyard.core.events import WebhookCreated, make_event
from crewyard.core.ids import new_id
from crewyard.core.webhooks import fold_webhook
from crewyard.eventstore import EventStore
from crewyard.notifier.health import Health


async def test_successes_on_one_instance_end_the_streak_another_instance_started(store: EventStore) -> None:
    hook = new_id("whk")
    created = WebhookCreated(url="http://x/", events=["*"], secret="sealed")
    await store.append(make_event(created, project="acme", aggregate_id=hook, event_id=new_id("evt")))
    webhook = fold_webhook(hook, await store.load("acme", "webhook", hook))
    a, b = Health(store, disable_after=20), Health(store, disable_after=20)
    await a.record(webhook, "succeeded", None)  # A has seen this webhook with no streak
    for _ in range(25):  # every failure on B is followed by a success on A
        await b.record(webhook, "failed", "HTTP 503")
        await a.record(webhook, "succeeded", None)
    assert fold_webhook(hook, await store.load("acme", "webhook", hook)).enabled
    for n in range(20):  # 20 failures in a row, wherever they happen, still disable it
        await (a if n % 2 else b).record(webhook, "failed", "HTTP 503")
    state = fold_webhook(hook, await store.load("acme", "webhook", hook))
    assert not state.enabled
    assert state.disabled_reason is not None and state.disabled_reason.startswith("20 deliveries in a row")


async def test_an_outcome_from_before_a_re_enabling_does_not_reset_the_new_streak(store: EventStore) -> None:
    # An instance that has not yet seen the webhook re-enabled (its epoch is older) must not
    # write its older epoch over the newer one's streak.
    hook = new_id("whk")
    created = WebhookCreated(url="http://x/", events=["*"], secret="sealed")
    await store.append(make_event(created, project="acme", aggregate_id=hook, event_id=new_id("evt")))
    current = fold_webhook(hook, await store.load("acme", "webhook", hook))
    stale = msgspec.structs.replace(current, enabled_since_seq=current.enabled_since_seq - 1)
    health = Health(store, disable_after=3)
    for _ in range(2):
        await health.record(current, "failed", "HTTP 503")
    await health.record(stale, "succeeded", None)  # from an instance a step behind
    await health.record(current, "failed", "HTTP 503")  # the third in a row of the new epoch
    state = fold_webhook(hook, await store.load("acme", "webhook", hook))
    assert not state.enabled and state.disabled_reason is not None
    assert state.disabled_reason.startswith("3 deliveries in a row"), state.disabled_reason
