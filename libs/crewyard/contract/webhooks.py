"""Outgoing webhooks and their deliveries."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
Text = Annotated[str, msgspec.Meta(max_length=500)]
DeploymentRef = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+\Z")]
EventName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class WebhookCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    url: Url
    #: Webhook event names (``run.succeeded``, ``run.failed``…) or ``*`` for all.
    events: Annotated[list[EventName], msgspec.Meta(min_length=1, max_length=20)]
    #: Only events of this deployment: an id (``dep_…``) or a deployment name.
    deployment: DeploymentRef | None = None
    description: Text | None = None


class WebhookUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Fields left out keep their value; ``enabled: true`` re-enables a disabled webhook."""

    url: Url | msgspec.UnsetType = msgspec.UNSET
    events: Annotated[list[EventName], msgspec.Meta(min_length=1, max_length=20)] | msgspec.UnsetType = (
        msgspec.UNSET
    )
    deployment: DeploymentRef | msgspec.UnsetType | None = msgspec.UNSET
    description: Text | msgspec.UnsetType | None = msgspec.UNSET
    enabled: bool | msgspec.UnsetType = msgspec.UNSET


class Webhook(msgspec.Struct, kw_only=True):
    id: str
    project: str
    url: str
    events: list[str]
    deployment: str | None
    description: str | None
    enabled: bool
    disabled_reason: str | None
    created_at: str
    updated_at: str
    #: The signing secret (``whsec_…``): only in the answer that creates or rotates it.
    secret: str | None = None


class WebhookList(msgspec.Struct, kw_only=True):
    webhooks: list[Webhook]


class DeliveryAttempt(msgspec.Struct, kw_only=True):
    attempt: int
    at: str
    outcome: Literal["succeeded", "retrying", "failed"]
    status_code: int | None
    error: str | None
    latency_ms: int
    response_excerpt: str
    next_attempt_at: str | None


class Delivery(msgspec.Struct, kw_only=True):
    id: str
    webhook_id: str
    event: str
    status: Literal["pending", "succeeded", "failed"]
    #: The stream event delivered, and the run or deployment it belongs to.
    source_event_id: str
    source_type: str
    run_id: str | None
    deployment_id: str | None
    created_at: str
    updated_at: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: str | None
    attempt_log: list[DeliveryAttempt]


class DeliveryList(msgspec.Struct, kw_only=True):
    deliveries: list[Delivery]
    next_cursor: str | None


class Redelivery(msgspec.Struct, kw_only=True):
    delivery_id: str
    webhook_id: str
    status: Literal["pending"] = "pending"
