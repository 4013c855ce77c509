"""Outgoing webhooks in the pure core: mapping, webhook and delivery-group folds, retry policy."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from crewyard.core.events import (
    DeliveryAttempted,
    DeliveryQueued,
    DeliveryRedeliveryRequested,
    Payload,
    Recorded,
    RunCompleted,
    RunQueued,
    RunStarted,
    WebhookCreated,
    WebhookDeleted,
    WebhookDisabled,
    WebhookEnabled,
    WebhookUpdated,
    decode,
    encode,
    make_event,
)
from crewyard.core.webhooks import (
    EVENT_MAP,
    InvalidWebhook,
    RetryPolicy,
    after_attempt,
    check_events,
    classify,
    delivery_id,
    fold_group,
    fold_webhook,
    group_id,
    plan_deliveries,
    webhook_event,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def rec(seq: int, payload: Payload, agg: str = "whk_1", at: datetime = T0) -> Recorded:
    event = make_event(payload, project="acme", aggregate_id=agg, event_id=f"evt_{seq}", time=at)
    return Recorded(seq, decode(encode(event)))


def test_the_documented_mapping_names_our_run_completed_run_succeeded():
    assert webhook_event("run.completed") == "run.succeeded"
    assert webhook_event("run.started") == "run.started"
    assert webhook_event("log") is None
    assert EVENT_MAP["deployment.ready"] == "deployment.ready"


def test_event_lists_are_checked_and_normalised():
    assert check_events(["run.failed", "run.succeeded", "run.failed"]) == ["run.failed", "run.succeeded"]
    assert check_events(["*"]) == ["*"]
    with pytest.raises(InvalidWebhook, match=r"unknown event 'run\.completed'"):
        check_events(["run.completed"])
    with pytest.raises(InvalidWebhook):
        check_events([])


def created(url: str = "http://x/hook", events: list[str] | None = None, deployment: str | None = None):
    return WebhookCreated(url=url, events=events or ["*"], deployment=deployment, secret="sealed")


def test_a_webhook_applies_to_events_stored_after_it_while_enabled():
    state = fold_webhook(
        "whk_1",
        [
            rec(10, created(events=["run.succeeded"])),
            rec(20, WebhookUpdated(url="http://y/hook", events=["run.failed"])),
            rec(30, WebhookDisabled(reason="kept failing", by="notifier")),
            rec(40, WebhookEnabled()),
            rec(50, WebhookDeleted()),
        ],
    )
    assert state.active_at(5) is None  # before it existed
    assert state.active_at(15).events == ["run.succeeded"]
    assert state.active_at(25).url == "http://y/hook"
    assert state.active_at(35) is None  # disabled
    assert state.active_at(45) is not None
    assert state.active_at(55) is None and not state.exists
    assert state.enabled_since_seq == 40


def test_deployment_filter_takes_an_id_or_a_name():
    config = fold_webhook("whk_1", [rec(1, created(deployment="research"))]).config
    assert config is not None
    assert config.wants("run.failed", "dep_x", "research")
    assert not config.wants("run.failed", "dep_x", "other")
    by_id = fold_webhook("whk_1", [rec(1, created(deployment="dep_x", events=["run.failed"]))]).config
    assert by_id is not None and by_id.wants("run.failed", "dep_x", None)
    assert not by_id.wants("run.started", "dep_x", None)


def test_ids_are_stable_per_event_and_webhook():
    assert delivery_id("whk_1", "evt_a", T0) == delivery_id("whk_1", "evt_a", T0)
    assert delivery_id("whk_1", "evt_a", T0) != delivery_id("whk_2", "evt_a", T0)
    assert delivery_id("whk_1", "evt_a", T0).startswith("dlv_")
    assert group_id("whk_1", "run_a") == group_id("whk_1", "run_a") != group_id("whk_1", "run_b")


def queued(dlv: str, seq: int, event: str = "run.started") -> DeliveryQueued:
    return DeliveryQueued(
        webhook_id="whk_1",
        delivery_id=dlv,
        event=event,
        source_event_id=f"evt_s{seq}",
        source_seq=seq,
        source_type="run.started",
        source_aggregate="run",
        source_id="run_a",
    )


def attempted(dlv: str, outcome: str, n: int = 1) -> DeliveryAttempted:
    return DeliveryAttempted(webhook_id="whk_1", delivery_id=dlv, attempt=n, outcome=outcome)  # type: ignore[arg-type]


def test_a_later_delivery_of_a_run_waits_for_the_earlier_one():
    history = [rec(1, queued("dlv_a", 100), "dlg_1"), rec(2, queued("dlv_b", 200, "run.succeeded"), "dlg_1")]
    group = fold_group("dlg_1", history)
    first, second = group.deliveries["dlv_a"], group.deliveries["dlv_b"]
    assert group.blocker(first) is None
    assert group.blocker(second) is first
    group = fold_group("dlg_1", [*history, rec(3, attempted("dlv_a", "retrying"), "dlg_1")])
    assert group.blocker(group.deliveries["dlv_b"]) is not None
    group = fold_group("dlg_1", [*history, rec(3, attempted("dlv_a", "failed"), "dlg_1")])
    assert group.blocker(group.deliveries["dlv_b"]) is None  # an ended delivery no longer blocks


def test_a_queued_delivery_decided_twice_is_one_delivery_and_redelivery_starts_a_new_series():
    group = fold_group(
        "dlg_1",
        [
            rec(1, queued("dlv_a", 100), "dlg_1"),
            rec(2, queued("dlv_a", 100), "dlg_1"),
            rec(3, attempted("dlv_a", "succeeded"), "dlg_1"),
            rec(4, DeliveryRedeliveryRequested(webhook_id="whk_1", delivery_id="dlv_a"), "dlg_1"),
        ],
    )
    assert list(group.deliveries) == ["dlv_a"]
    d = group.deliveries["dlv_a"]
    assert (d.status, d.attempts, d.series_attempts) == ("pending", 1, 0)


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        *[(200, "success"), (204, "success"), (None, "retry"), (500, "retry"), (503, "retry")],
        *[(429, "retry"), (408, "retry"), (400, "final"), (404, "final"), (410, "final"), (301, "final")],
    ],
)
def test_which_answers_are_retried(status, verdict):
    assert classify(status) == verdict


def test_backoff_grows_with_jitter_honours_retry_after_and_gives_up_after_the_window():
    policy = RetryPolicy(base_s=1, cap_s=60, window_s=300)
    group = fold_group("dlg_1", [rec(1, queued("dlv_a", 1), "dlg_1")])
    d = group.deliveries["dlv_a"]
    waits = []
    for n in range(1, 10):
        d.series_attempts, d.series_started_at = n - 1, T0
        outcome, nxt = after_attempt(
            d, now=T0, status_code=503, retry_after_s=None, policy=policy, jitter=random.random()
        )
        assert outcome == "retrying" and nxt is not None
        waits.append((nxt - T0).total_seconds())
        top = min(60, 2 ** (n - 1))
        assert top / 2 <= waits[-1] <= top
    assert waits[-1] <= 60
    outcome, nxt = after_attempt(d, now=T0, status_code=429, retry_after_s=42, policy=policy, jitter=0.9)
    assert nxt == T0 + timedelta(seconds=42)
    late = T0 + timedelta(seconds=299)
    assert (
        after_attempt(d, now=late, status_code=500, retry_after_s=None, policy=policy, jitter=0)[0]
        == "failed"
    )
    assert after_attempt(d, now=T0, status_code=404, retry_after_s=None, policy=policy, jitter=0) == (
        "failed",
        None,
    )
    assert (
        after_attempt(d, now=T0, status_code=200, retry_after_s=None, policy=policy, jitter=0)[0]
        == "succeeded"
    )


def test_a_receivers_retry_after_is_kept_within_the_policy():
    policy = RetryPolicy(base_s=2, cap_s=3600, window_s=86400)
    group = fold_group("dlg_1", [rec(1, queued("dlv_a", 1), "dlg_1")])
    d = group.deliveries["dlv_a"]
    d.series_started_at = T0
    for asked, waited in ((0, 2), (0.001, 2), (3e11, 3600), (90, 90)):
        outcome, nxt = after_attempt(d, now=T0, status_code=429, retry_after_s=asked, policy=policy, jitter=0)
        assert (outcome, nxt) == ("retrying", T0 + timedelta(seconds=waited)), asked
    d.series_attempts = 50_000  # what a stream of short waits adds up to: no overflow
    assert (
        after_attempt(d, now=T0, status_code=503, retry_after_s=None, policy=policy, jitter=0)[0]
        == "retrying"
    )


def test_a_plan_covers_what_the_webhook_wanted_when_each_event_was_stored():
    run = [
        rec(10, RunQueued(deployment_id="dep_a", input={}), "run_a"),
        rec(20, RunStarted(runner_id="r", backend="process", isolated=False), "run_a"),
        rec(40, RunCompleted(output=None), "run_a"),
    ]
    # Created between the start and the end of the run: only the end is for it.
    late = fold_webhook("whk_1", [rec(30, created(events=["*"]))])
    plan = plan_deliveries(run, 40, late, fold_group("dlg_1", []))
    assert [(d.event, d.source_seq) for d in plan] == [("run.succeeded", 40)]
    # Existing all along: both, the start first; up to the start only: just the start.
    early = fold_webhook("whk_1", [rec(5, created(events=["*"]))])
    assert [d.event for d in plan_deliveries(run, 40, early, fold_group("dlg_1", []))] == [
        "run.started",
        "run.succeeded",
    ]
    assert [d.event for d in plan_deliveries(run, 20, early, fold_group("dlg_1", []))] == ["run.started"]
    # What the group already holds is not planned again.
    held = fold_group(
        "dlg_1", [rec(50, plan_deliveries(run, 20, early, fold_group("dlg_1", []))[0], "dlg_1")]
    )
    assert [d.event for d in plan_deliveries(run, 40, early, held)] == ["run.succeeded"]
    # A deployment filter by id: runs of another deployment are not for it.
    other = fold_webhook("whk_1", [rec(5, created(deployment="dep_other"))])
    assert plan_deliveries(run, 40, other, fold_group("dlg_1", [])) == []


def test_thread_events_are_refused_until_webhooks_deliver_them():
    # Accepted before, never delivered: the notifier subscribes to run and deployment events only.
    with pytest.raises(InvalidWebhook, match=r"'thread\.checkpointed' cannot be subscribed to"):
        check_events(["run.failed", "thread.checkpointed"])
    assert "thread.checkpointed" not in EVENT_MAP and webhook_event("thread.checkpointed") is None
