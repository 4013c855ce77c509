"""How events that leave and enter the platform change the read model: webhooks and their
deliveries, triggers, schedules — one handler per event type, like ``handlers.py`` (the tables
are in :mod:`crewyard.readmodel`).

Secrets stay as they are in the stream: a webhook's signing secret is not copied here at all; a
trigger's signature secret only as the ciphertext the gateway needs to verify requests.

An event changes rows of its own project only: every statement that finds a row by id also names
the event's project (a delivery's attempt is recorded only when its delivery is the project's).
"""

from __future__ import annotations

import aiosqlite
import msgspec

from crewyard.core.events import (
    DeliveryAttempted,
    DeliveryQueued,
    DeliveryRedeliveryRequested,
    Event,
    ScheduleCreated,
    ScheduleDeleted,
    ScheduleFired,
    SchedulePaused,
    ScheduleResumed,
    TriggerCreated,
    TriggerRevoked,
    WebhookCreated,
    WebhookDeleted,
    WebhookDisabled,
    WebhookEnabled,
    WebhookSecretRotated,
    WebhookUpdated,
)

_json = msgspec.json.Encoder()


def _ts(e: Event) -> str:
    return e.time.isoformat()


def _dumps(value: object) -> str:
    return _json.encode(value).decode()


async def webhook_created(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    d = e.data
    assert isinstance(d, WebhookCreated)
    await db.execute(
        "INSERT OR IGNORE INTO webhooks (id, project, url, events, deployment, description, created_at,"
        " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (e.aggregate_id, e.project, d.url, _dumps(d.events), d.deployment, d.description, _ts(e), _ts(e)),
    )


async def webhook_updated(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    d = e.data
    assert isinstance(d, WebhookUpdated)
    await db.execute(
        "UPDATE webhooks SET url = ?, events = ?, deployment = ?, description = ?, updated_at = ?"
        " WHERE id = ? AND project = ?",
        (d.url, _dumps(d.events), d.deployment, d.description, _ts(e), e.aggregate_id, e.project),
    )


async def webhook_touched(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    assert isinstance(e.data, WebhookSecretRotated)
    await db.execute(
        "UPDATE webhooks SET updated_at = ? WHERE id = ? AND project = ?", (_ts(e), e.aggregate_id, e.project)
    )


async def webhook_disabled(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    assert isinstance(e.data, WebhookDisabled)
    await db.execute(
        "UPDATE webhooks SET enabled = 0, disabled_reason = ?, updated_at = ? WHERE id = ? AND project = ?",
        (e.data.reason, _ts(e), e.aggregate_id, e.project),
    )


async def webhook_enabled(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    await db.execute(
        "UPDATE webhooks SET enabled = 1, disabled_reason = NULL, updated_at = ?"
        " WHERE id = ? AND project = ?",
        (_ts(e), e.aggregate_id, e.project),
    )


async def webhook_deleted(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    await db.execute(
        "UPDATE webhooks SET deleted = 1, updated_at = ? WHERE id = ? AND project = ?",
        (_ts(e), e.aggregate_id, e.project),
    )


async def delivery_queued(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    d = e.data
    assert isinstance(d, DeliveryQueued)
    await db.execute(
        "INSERT OR IGNORE INTO webhook_deliveries (id, webhook_id, group_id, project, event, source_event_id,"
        " source_type, source_aggregate, source_id, status, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
        (
            d.delivery_id,
            d.webhook_id,
            e.aggregate_id,
            e.project,
            d.event,
            d.source_event_id,
            d.source_type,
            d.source_aggregate,
            d.source_id,
            _ts(e),
            _ts(e),
        ),
    )


async def delivery_attempted(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    d = e.data
    assert isinstance(d, DeliveryAttempted)
    nxt = d.next_attempt_at.isoformat() if d.next_attempt_at else None
    status = "pending" if d.outcome == "retrying" else d.outcome
    cur = await db.execute(
        "UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1, last_status_code = ?,"
        " last_error = ?, next_attempt_at = ?, updated_at = ? WHERE id = ? AND project = ?",
        (status, d.status_code, d.error, nxt, _ts(e), d.delivery_id, e.project),
    )
    if cur.rowcount < 1:
        return  # no delivery of this project: its attempts are not another project's history
    await db.execute(
        "INSERT OR IGNORE INTO webhook_attempts (seq, delivery_id, attempt, at, outcome, status_code, error,"
        " latency_ms, response_excerpt, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (seq, d.delivery_id, d.attempt, _ts(e), d.outcome, d.status_code, d.error, d.latency_ms,
         d.response_excerpt, nxt),
    )  # fmt: skip


async def delivery_redelivery(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    d = e.data
    assert isinstance(d, DeliveryRedeliveryRequested)
    await db.execute(
        "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = NULL, updated_at = ?"
        " WHERE id = ? AND project = ?",
        (_ts(e), d.delivery_id, e.project),
    )


async def trigger_created(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    d = e.data
    assert isinstance(d, TriggerCreated)
    await db.execute(
        "INSERT OR IGNORE INTO triggers (id, project, name, token_sha256, deployment_id, environment,"
        " template, signature_header, signature_secret, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            e.aggregate_id,
            e.project,
            d.name,
            d.token_sha256,
            d.deployment_id,
            d.environment,
            None if d.template is None else _dumps(d.template),
            d.signature_header,
            d.signature_secret,
            _ts(e),
        ),
    )


async def trigger_revoked(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    assert isinstance(e.data, TriggerRevoked)
    await db.execute(
        "UPDATE triggers SET revoked = 1 WHERE id = ? AND project = ?", (e.aggregate_id, e.project)
    )


async def schedule_created(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    d = e.data
    assert isinstance(d, ScheduleCreated)
    await db.execute(
        "INSERT OR IGNORE INTO schedules (id, project, name, cron, timezone, input, deployment_id,"
        " environment, overlap, catch_up, catch_up_limit, created_at, plan_from)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (e.aggregate_id, e.project, d.name, d.cron, d.timezone, _dumps(d.input), d.deployment_id,
         d.environment, d.overlap, d.catch_up, d.catch_up_limit, _ts(e), _ts(e)),
    )  # fmt: skip


async def schedule_paused(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    assert isinstance(e.data, SchedulePaused)
    await db.execute(
        "UPDATE schedules SET paused = 1 WHERE id = ? AND project = ?", (e.aggregate_id, e.project)
    )


async def schedule_resumed(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    assert isinstance(e.data, ScheduleResumed)
    await db.execute(
        "UPDATE schedules SET paused = 0, plan_from = ? WHERE id = ? AND project = ?",
        (_ts(e), e.aggregate_id, e.project),
    )


async def schedule_deleted(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    assert isinstance(e.data, ScheduleDeleted)
    await db.execute(
        "UPDATE schedules SET deleted = 1 WHERE id = ? AND project = ?", (e.aggregate_id, e.project)
    )


async def schedule_fired(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    d = e.data
    assert isinstance(d, ScheduleFired)
    planned = d.planned_at.isoformat()
    await db.execute(
        "UPDATE schedules SET fired = fired + 1,"
        " last_planned_at = CASE WHEN last_planned_at IS NULL OR last_planned_at < ? THEN ?"
        " ELSE last_planned_at END,"
        " last_run_id = COALESCE(?, last_run_id) WHERE id = ? AND project = ?",
        (planned, planned, d.run_id, e.aggregate_id, e.project),
    )


HANDLERS = {
    WebhookCreated.TYPE: webhook_created,
    WebhookUpdated.TYPE: webhook_updated,
    WebhookSecretRotated.TYPE: webhook_touched,
    WebhookDisabled.TYPE: webhook_disabled,
    WebhookEnabled.TYPE: webhook_enabled,
    WebhookDeleted.TYPE: webhook_deleted,
    DeliveryQueued.TYPE: delivery_queued,
    DeliveryAttempted.TYPE: delivery_attempted,
    DeliveryRedeliveryRequested.TYPE: delivery_redelivery,
    TriggerCreated.TYPE: trigger_created,
    TriggerRevoked.TYPE: trigger_revoked,
    ScheduleCreated.TYPE: schedule_created,
    SchedulePaused.TYPE: schedule_paused,
    ScheduleResumed.TYPE: schedule_resumed,
    ScheduleDeleted.TYPE: schedule_deleted,
    ScheduleFired.TYPE: schedule_fired,
}
