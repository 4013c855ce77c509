"""Outgoing webhooks: create, list, read, update, delete, rotate the secret; deliveries and
redelivery. The signing secret is shown once (on create and rotate); the stream holds it only
encrypted, bound to the webhook's id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import msgspec
from litestar import Request, delete, get, patch, post
from litestar.openapi.spec import OpenAPIType, Schema

from crewyard.contract.common import Deleted, NoFields
from crewyard.contract.webhooks import (
    Delivery,
    DeliveryAttempt,
    DeliveryList,
    Redelivery,
    Webhook,
    WebhookCreate,
    WebhookList,
    WebhookUpdate,
)
from crewyard.core.access import rank
from crewyard.core.events import (
    DeliveryRedeliveryRequested,
    Payload,
    WebhookCreated,
    WebhookDeleted,
    WebhookDisabled,
    WebhookEnabled,
    WebhookSecretRotated,
    WebhookUpdated,
)
from crewyard.core.ids import is_id, new_id
from crewyard.core.signing import new_secret
from crewyard.core.targets import Policy, TargetRefused, check_url, literal_address, refusal
from crewyard.core.webhooks import (
    InvalidWebhook,
    WebhookState,
    check_events,
    fold_group,
    fold_webhook,
    group_id,
)
from crewyard.eventstore import ConcurrencyConflict

from .access import current_key
from .context import Gateway, gw, project_name
from .errors import ApiError, bad_request, conflict, not_found
from .openapi import TEXT, OptionalBody, documented, page_size, param

#: How long the previous secret keeps signing (beside the new one) after a rotation.
ROTATION_GRACE = timedelta(hours=24)
DEPLOY, READ = {"role": "deploy"}, {"role": "read"}


def secret_name(webhook_id: str) -> str:
    """What a webhook's encrypted secret is bound to (the notifier decrypts with the same)."""
    return f"webhook:{webhook_id}"


def _target(g: Gateway, url: str) -> str:
    try:
        url = check_url(url)
    except TargetRefused as exc:
        raise bad_request(str(exc), "invalid_url") from None
    # A literal address can be judged now; names are resolved and checked at every attempt.
    literal = literal_address(urlsplit(url).hostname or "")
    policy: Policy = "public" if g.settings.webhook_targets == "public" else "private"
    if literal is not None and (reason := refusal(literal, 0, policy=policy)):
        raise bad_request(f"url points to {reason}", "invalid_url")
    return url


def _events(names: list[str]) -> list[str]:
    try:
        return check_events(names)
    except InvalidWebhook as exc:
        raise bad_request(str(exc), "invalid_events") from None


def webhook_view(row: dict[str, Any], secret: str | None = None, *, whole_url: bool = True) -> Webhook:
    return Webhook(
        id=row["id"],
        project=row["project"],
        url=row["url"] if whole_url else _origin(row["url"]),
        events=list(row["events"]),
        deployment=row["deployment"],
        description=row["description"],
        enabled=bool(row["enabled"]),
        disabled_reason=row["disabled_reason"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        secret=secret,
    )


def _origin(url: str) -> str:
    """A webhook's address without its path, query or user: many receivers (chat services) take
    the secret in the path, for the project's deployers' eyes, not every reader's."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/\u2026"


def _whole_urls(request: Request[Any, Any, Any]) -> bool:
    """Whether the request may see webhooks' whole addresses: what making one needs (deploy)."""
    key = current_key(request)
    return key is None or rank(key.role) >= rank(DEPLOY["role"])


async def _state(g: Gateway, webhook_id: str, project: str | None = None) -> WebhookState:
    """The webhook folded from its events; 404 if it does not exist (in ``project``, if given)."""
    if not is_id(webhook_id, "whk"):
        raise not_found(f"webhook {webhook_id}")
    state = fold_webhook(webhook_id, await g.store.load_any("webhook", webhook_id))
    if not state.exists or (project is not None and state.project != project):
        raise not_found(f"webhook {webhook_id}")
    return state


async def _row(g: Gateway, webhook_id: str) -> dict[str, Any]:
    row = await g.rm.webhook(webhook_id)
    if row is None:
        await g.fresh()
        row = await g.rm.webhook(webhook_id)
    if row is None:
        raise not_found(f"webhook {webhook_id}")
    return row


@post("/v1/projects/{project:str}/webhooks", status_code=201, opt=DEPLOY)
async def create_webhook(request: Request[Any, Any, Any], project: str, data: WebhookCreate) -> Webhook:
    """Create a webhook; the answer holds its signing secret, shown this once."""
    g = gw(request)
    project = project_name(project)
    await g.project(project)
    url, events = _target(g, data.url), _events(data.events)
    webhook_id, secret = new_id("whk"), new_secret()
    sealed = g.secrets.encrypt(project, secret_name(webhook_id), secret)
    payload = WebhookCreated(
        url=url, events=events, deployment=data.deployment, description=data.description, secret=sealed
    )
    await g.create_counted(payload, project, webhook_id, g.settings.max_webhooks)
    return webhook_view(await _row(g, webhook_id), secret)


@get("/v1/projects/{project:str}/webhooks", opt=READ)
async def list_webhooks(request: Request[Any, Any, Any], project: str) -> WebhookList:
    g = gw(request)
    project = project_name(project)
    await g.project(project)
    whole = _whole_urls(request)
    return WebhookList(webhooks=[webhook_view(r, whole_url=whole) for r in await g.rm.webhooks(project)])


@get("/v1/projects/{project:str}/webhooks/{webhook_id:str}", opt=READ)
async def get_webhook(request: Request[Any, Any, Any], project: str, webhook_id: str) -> Webhook:
    g = gw(request)
    row = await _row(g, webhook_id)
    if row["project"] != project_name(project):
        raise not_found(f"webhook {webhook_id}")
    return webhook_view(row, whole_url=_whole_urls(request))


async def _change(g: Gateway, project: str, webhook_id: str, decide: Any) -> WebhookState:
    """Decide on the current state and append, again if another writer got there first."""
    for _ in range(5):
        state = await _state(g, webhook_id, project)
        payloads: list[Payload] = decide(state)
        try:
            version = state.version
            for payload in payloads:
                version = await g.commit_payload(payload, project, webhook_id, version)
        except ConcurrencyConflict:
            continue
        return state
    raise conflict("the webhook kept changing; try again")


@patch("/v1/projects/{project:str}/webhooks/{webhook_id:str}", opt=DEPLOY)
async def update_webhook(
    request: Request[Any, Any, Any], project: str, webhook_id: str, data: WebhookUpdate
) -> Webhook:
    """Change the URL, events, deployment filter or description; ``enabled: true`` re-enables a
    webhook that was disabled (by you, or after failing too often), ``false`` disables it."""
    g = gw(request)
    project = project_name(project)
    url = None if data.url is msgspec.UNSET else _target(g, data.url)
    events = None if data.events is msgspec.UNSET else _events(data.events)

    def decide(state: WebhookState) -> list[Payload]:
        assert state.config is not None
        cfg = state.config
        out: list[Payload] = []
        changed = WebhookUpdated(
            url=url or cfg.url,
            events=events or cfg.events,
            deployment=cfg.deployment if data.deployment is msgspec.UNSET else data.deployment,
            description=cfg.description if data.description is msgspec.UNSET else data.description,
        )
        current = WebhookUpdated(
            url=cfg.url, events=cfg.events, deployment=cfg.deployment, description=cfg.description
        )
        if changed != current:
            out.append(changed)
        if data.enabled is True and not state.enabled:
            out.append(WebhookEnabled())
        elif data.enabled is False and state.enabled:
            out.append(WebhookDisabled(reason="disabled through the API", by="user"))
        return out

    await _change(g, project, webhook_id, decide)
    await g.fresh()
    return webhook_view(await _row(g, webhook_id))


@post(
    "/v1/projects/{project:str}/webhooks/{webhook_id:str}/rotate-secret",
    status_code=200,
    opt=DEPLOY,
    operation_class=OptionalBody,
)
async def rotate_secret(
    request: Request[Any, Any, Any], project: str, webhook_id: str, data: NoFields | None = None
) -> Webhook:
    """A new signing secret, shown this once; the previous one also signs for 24 hours."""
    g = gw(request)
    project = project_name(project)
    secret = new_secret()
    sealed = g.secrets.encrypt(project, secret_name(webhook_id), secret)
    until = datetime.now(UTC) + ROTATION_GRACE
    await _change(
        g, project, webhook_id, lambda _s: [WebhookSecretRotated(secret=sealed, previous_valid_until=until)]
    )
    await g.fresh()
    return webhook_view(await _row(g, webhook_id), secret)


@delete("/v1/projects/{project:str}/webhooks/{webhook_id:str}", status_code=200, opt=DEPLOY)
async def delete_webhook(request: Request[Any, Any, Any], project: str, webhook_id: str) -> Deleted:
    """Delete a webhook: nothing more is delivered to it, pending deliveries included."""
    g = gw(request)
    project = project_name(project)
    await _change(g, project, webhook_id, lambda _s: [WebhookDeleted()])
    return Deleted(id=webhook_id)


def delivery_view(row: dict[str, Any]) -> Delivery:
    run = row["source_aggregate"] == "run"
    return Delivery(
        id=row["id"],
        webhook_id=row["webhook_id"],
        event=row["event"],
        status=row["status"],
        source_event_id=row["source_event_id"],
        source_type=row["source_type"],
        run_id=row["source_id"] if run else None,
        deployment_id=None if run else row["source_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        attempts=row["attempts"],
        last_status_code=row["last_status_code"],
        last_error=row["last_error"],
        next_attempt_at=row["next_attempt_at"],
        attempt_log=[msgspec.convert(a, DeliveryAttempt) for a in row.get("attempt_log", [])],
    )


_DELIVERY_STATUSES = ("pending", "succeeded", "failed")


@get(
    "/v1/webhooks/{webhook_id:str}/deliveries",
    opt=READ,
    operation_class=documented(
        param("status", Schema(type=OpenAPIType.STRING, enum=list(_DELIVERY_STATUSES)), "Only these"),
        page_size(50, 200),
        param("cursor", TEXT, "A page's next_cursor: the page after it"),
    ),
)
async def list_deliveries(request: Request[Any, Any, Any], webhook_id: str) -> DeliveryList:
    """Deliveries, newest first, each with every attempt (``?status=pending|succeeded|failed``,
    ``?limit=``, ``?cursor=``)."""
    g = gw(request)
    await _row(g, webhook_id)
    q = request.query_params
    status = q.get("status")
    if status and status not in _DELIVERY_STATUSES:
        raise bad_request(f"unknown status {status!r}")
    try:
        limit = int(q.get("limit", "50"))
    except ValueError:
        raise bad_request("limit must be a number") from None
    if not 1 <= limit <= 200:
        raise bad_request("limit must be between 1 and 200")
    rows, cursor = await g.rm.deliveries(webhook_id, status=status, limit=limit, cursor=q.get("cursor"))
    return DeliveryList(deliveries=[delivery_view(r) for r in rows], next_cursor=cursor)


@post(
    "/v1/webhooks/{webhook_id:str}/deliveries/{delivery_id:str}/redeliver",
    status_code=202,
    opt=DEPLOY,
    operation_class=OptionalBody,
)
async def redeliver(
    request: Request[Any, Any, Any], webhook_id: str, delivery_id: str, data: NoFields | None = None
) -> Redelivery:
    """Deliver again: same delivery id, a new series of attempts."""
    g = gw(request)
    state = await _state(g, webhook_id)
    row = await g.rm.delivery(delivery_id)
    if row is None or row["webhook_id"] != webhook_id:
        raise not_found(f"delivery {delivery_id} of webhook {webhook_id}")
    # Decided on the stream, not the read model: requests at once (or one the read model does not
    # show yet) started as many series of attempts, each delivering again.
    gid = group_id(webhook_id, row["source_id"])
    group = fold_group(gid, await g.store.load(state.project, "delivery", gid))
    found = group.deliveries.get(delivery_id)
    busy = ApiError(409, "conflict", f"delivery {delivery_id} is still being delivered")
    if found is None or found.status == "pending":
        raise busy
    payload = DeliveryRedeliveryRequested(webhook_id=webhook_id, delivery_id=delivery_id)
    try:
        await g.commit_payload(payload, state.project, gid, group.version)
    except ConcurrencyConflict:  # another attempt, or another request to deliver it again
        raise busy from None
    return Redelivery(delivery_id=delivery_id, webhook_id=webhook_id)


ROUTES = [
    create_webhook,
    list_webhooks,
    get_webhook,
    update_webhook,
    rotate_secret,
    delete_webhook,
    list_deliveries,
    redeliver,
]
