"""Outgoing webhook events: a webhook (``whk_…``) and the deliveries made to it.

A webhook's signing secret is in the stream only as ciphertext (the platform's secret box, bound
to the webhook id), because the notifier must recover it to sign. Its URL is a secret too, for
the project's deployers: chat services take a token in the path, and the API shows keys below
the deploy role only its scheme and host. So every event carrying the URL (created, updated) is
``SEALED``: API clients following a project's events never receive it, whatever their role.

Deliveries are grouped per webhook and source aggregate (one run, one deployment): the group
(``dlg_…``, aggregate ``delivery``) holds every delivery of that run to that webhook and every
attempt, so ordering per run is a question about one small aggregate.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from ._base import Payload


class WebhookCreated(Payload, frozen=True, kw_only=True):
    TYPE = "webhook.created"
    AGGREGATE = "webhook"
    SEALED = True
    url: str
    events: list[str]
    #: Only events of this deployment (an id ``dep_…``) or of deployments with this name.
    deployment: str | None = None
    description: str | None = None
    #: The ``whsec_…`` signing secret, encrypted (never clear text in the stream).
    secret: str


class WebhookUpdated(Payload, frozen=True, kw_only=True):
    """The webhook's whole configuration after an update (not a patch: a fold needs no merge)."""

    TYPE = "webhook.updated"
    AGGREGATE = "webhook"
    #: The URL may hold a receiver's token (a chat service's path): see the module's note.
    SEALED = True
    url: str
    events: list[str]
    deployment: str | None = None
    description: str | None = None


class WebhookSecretRotated(Payload, frozen=True, kw_only=True):
    """A new signing secret (encrypted). The previous one still signs, beside the new one, until
    ``previous_valid_until`` so receivers can switch without losing deliveries."""

    TYPE = "webhook.secret_rotated"
    SEALED = True
    AGGREGATE = "webhook"
    secret: str
    previous_valid_until: datetime | None = None


class WebhookDisabled(Payload, frozen=True, kw_only=True):
    TYPE = "webhook.disabled"
    AGGREGATE = "webhook"
    reason: str
    #: ``user`` (through the API) or ``notifier`` (the endpoint kept failing).
    by: Literal["user", "notifier"] = "user"


class WebhookEnabled(Payload, frozen=True, kw_only=True):
    TYPE = "webhook.enabled"
    AGGREGATE = "webhook"


class WebhookDeleted(Payload, frozen=True, kw_only=True):
    TYPE = "webhook.deleted"
    AGGREGATE = "webhook"


class DeliveryQueued(Payload, frozen=True, kw_only=True):
    """One stream event is to be delivered to one webhook. ``delivery_id`` is derived from the
    webhook and the source event, so it is the same however often this is decided."""

    TYPE = "delivery.queued"
    AGGREGATE = "delivery"
    webhook_id: str
    delivery_id: str
    #: The webhook event name (``run.succeeded``…), see :mod:`crewyard.core.webhooks`.
    event: str
    source_event_id: str
    source_seq: int
    source_type: str
    source_aggregate: str
    source_id: str


Outcome = Literal["succeeded", "retrying", "failed"]


class DeliveryAttempted(Payload, frozen=True, kw_only=True):
    """One HTTP attempt (or the decision not to make one, ``status_code`` None and an ``error``)."""

    TYPE = "delivery.attempted"
    AGGREGATE = "delivery"
    webhook_id: str
    delivery_id: str
    attempt: int
    outcome: Outcome
    status_code: int | None = None
    error: str | None = None
    latency_ms: int = 0
    response_excerpt: str = ""
    next_attempt_at: datetime | None = None


class DeliveryRedeliveryRequested(Payload, frozen=True, kw_only=True):
    """Deliver again (same delivery id, a new series of attempts)."""

    TYPE = "delivery.redelivery_requested"
    AGGREGATE = "delivery"
    webhook_id: str
    delivery_id: str


WEBHOOK_EVENTS: tuple[type[Payload], ...] = (
    WebhookCreated,
    WebhookUpdated,
    WebhookSecretRotated,
    WebhookDisabled,
    WebhookEnabled,
    WebhookDeleted,
    DeliveryQueued,
    DeliveryAttempted,
    DeliveryRedeliveryRequested,
)
