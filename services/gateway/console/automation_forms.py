"""The forms of the automation pages: make a webhook, a trigger URL or a schedule, rotate a
webhook's signing secret, deliver again.

Each form is turned into the API's own typed body (``crewyard.contract``) and handed to the API
route's own function (``route.fn``): the console adds no second idea of what creating a webhook
means, and the checks are the API's. A secret the answer holds is shown once, on the page the
form answers with (pages are never cached). A refused form (4xx) answers with the same page, the
reason in an alert beside the form and what was typed still in it; the guard has already refused
a key whose role does not suffice (403), before anything here runs.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from litestar import Request, Response, post
from litestar.response import Redirect

from crewyard.contract.schedules import ScheduleCreate
from crewyard.contract.triggers import TriggerCreate
from crewyard.contract.webhooks import WebhookCreate

from .. import schedules, triggers, webhooks
from .automation import render_automation, render_webhook
from .csrf import checked_form
from .forms import Refused, call_route, typed

DEPLOY_FORM = {"role": "deploy", "page": True, "form": True}


def _text(form: dict[str, str], name: str) -> str | None:
    return form.get(name, "").strip() or None


async def _create(
    request: Request[Any, Any, Any], project: str, route: Any, kind: type[Any], fields: dict[str, Any]
) -> Any:
    """What the API route makes of the form as its typed body (:class:`Refused` when it would not)."""
    return await call_route(route, request, project=project, data=typed(kind, fields))


async def _refused(
    request: Request[Any, Any, Any], project: str, which: str, exc: Refused, form: dict[str, str], **kept: Any
) -> Response[str]:
    """The page again, the reason beside form ``which`` and what was typed (and ``kept``) in it."""
    refused = {"form": which, "message": exc.message, "fields": form, **kept}
    return await render_automation(request, project, status=exc.status, refused=refused)


@post("/projects/{project:str}/webhooks", opt=DEPLOY_FORM, include_in_schema=False)
async def webhook_form(request: Request[Any, Any, Any], project: str) -> Response[str]:
    form = await checked_form(request)
    events = [e for e in (await request.form()).getall("events", []) if isinstance(e, str)]
    fields = {
        "url": form.get("url", "").strip(),
        "events": events,
        "deployment": _text(form, "deployment"),
        "description": _text(form, "description"),
    }
    try:
        made = await _create(request, project, webhooks.create_webhook, WebhookCreate, fields)
    except Refused as exc:
        return await _refused(request, project, "webhook", exc, form, events=events)
    created = {"title": "Webhook created", "what": made.url, "secrets": [("Signing secret", made.secret)]}
    return await render_automation(request, project, status=201, created=created)


@post("/projects/{project:str}/triggers", opt=DEPLOY_FORM, include_in_schema=False)
async def trigger_form(request: Request[Any, Any, Any], project: str) -> Response[str]:
    form = await checked_form(request)
    fields: dict[str, Any] = {
        "name": form.get("name", "").strip(),
        "environment": _text(form, "environment"),
        "deployment": _text(form, "deployment"),
        "signature": {} if form.get("signed") else None,
    }
    try:
        made = await _create(request, project, triggers.create_trigger, TriggerCreate, fields)
    except Refused as exc:
        return await _refused(request, project, "trigger", exc, form)
    base = str(request.base_url).rstrip("/")
    secrets = [("Trigger URL (POST JSON to it)", base + made.url)]
    if made.signature_secret:
        secrets.append((f"Signature secret ({made.signature_header})", made.signature_secret))
    created = {"title": "Trigger created", "what": made.name, "secrets": secrets}
    return await render_automation(request, project, status=201, created=created)


def _input(text: str | None) -> Any:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise Refused(400, f"input: not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise Refused(400, 'input: a JSON object, such as {"topic": "daily"}')
    return value


@post("/projects/{project:str}/schedules", opt=DEPLOY_FORM, include_in_schema=False)
async def schedule_create_form(request: Request[Any, Any, Any], project: str) -> Response[str]:
    form = await checked_form(request)
    try:
        fields = {
            "cron": form.get("cron", "").strip(),
            "timezone": _text(form, "timezone"),
            "name": _text(form, "name"),
            "input": _input(_text(form, "input")),
            "environment": _text(form, "environment"),
            "overlap": _text(form, "overlap"),
        }
        await _create(request, project, schedules.create_schedule, ScheduleCreate, fields)
    except Refused as exc:
        return await _refused(request, project, "schedule", exc, form)
    return await render_automation(request, project, status=201)


@post(
    "/projects/{project:str}/webhooks/{webhook_id:str}/rotate-secret",
    opt=DEPLOY_FORM,
    include_in_schema=False,
)
async def rotate_form(request: Request[Any, Any, Any], project: str, webhook_id: str) -> Response[str]:
    """A new signing secret, shown on the answer this once (the old one signs for 24 hours)."""
    await checked_form(request)
    try:
        made = await call_route(webhooks.rotate_secret, request, project=project, webhook_id=webhook_id)
    except Refused as exc:
        return await render_webhook(request, project, webhook_id, status=exc.status, refused=exc.message)
    return await render_webhook(request, project, webhook_id, secret=made.secret)


@post(
    "/projects/{project:str}/webhooks/{webhook_id:str}/deliveries/{delivery_id:str}/redeliver",
    opt=DEPLOY_FORM,
    include_in_schema=False,
)
async def redeliver_form(
    request: Request[Any, Any, Any], project: str, webhook_id: str, delivery_id: str
) -> Response[Any]:
    await checked_form(request)
    try:
        await call_route(webhooks.redeliver, request, webhook_id=webhook_id, delivery_id=delivery_id)
    except Refused as exc:
        return await render_webhook(request, project, webhook_id, status=exc.status, refused=exc.message)
    where = f"/projects/{quote(project)}/webhooks/{quote(webhook_id)}#delivery-{quote(delivery_id)}"
    return Redirect(where, status_code=303)


ROUTES = [webhook_form, trigger_form, schedule_create_form, rotate_form, redeliver_form]
