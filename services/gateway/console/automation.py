"""What starts runs or hears about them, per project: outgoing webhooks (with every delivery
attempt), trigger URLs (their tokens are never shown again), schedules (pause and resume)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from litestar import Request, Response, get, post
from litestar.response import Redirect

from crewyard.core.events import SchedulePaused, ScheduleResumed
from crewyard.core.ids import is_id
from crewyard.core.webhooks import EVENT_MAP, WILDCARD

from ..context import gw
from ..errors import ApiError, bad_request, not_found
from ..schedules import change_schedule, schedule_view
from ..triggers import trigger_view
from ..webhooks import delivery_view, webhook_view
from .csrf import checked_form
from .projects import READ, _sees
from .render import page
from .viewer import viewer

DEPLOY = {"role": "deploy", "page": True}
DELIVERY_PAGE = 50


async def render_automation(
    request: Request[Any, Any, Any], project: str, status: int = 200, **shown: Any
) -> Response[str]:
    """The page; ``shown``: what a form's answer adds (a secret shown once, or why it was refused
    with what was typed, so nothing has to be typed again)."""
    g, who = gw(request), viewer(request)
    proj = await g.project(_sees(who, project))
    name = proj["name"]
    now = datetime.now(UTC)
    return page(
        request,
        "automation.html",
        status=status,
        project=proj,
        webhooks=[webhook_view(r, whole_url=who.may("deploy", name)) for r in await g.rm.webhooks(name)],
        triggers=[trigger_view(r) for r in await g.rm.triggers(name)],
        schedules=[schedule_view(r, now) for r in await g.rm.schedules(name)],
        can_deploy=who.may("deploy", name),
        webhook_events=[*EVENT_MAP, WILDCARD],
        nav="projects",
        **({"created": None, "refused": None} | shown),
    )


@get("/projects/{project:str}/automation", opt=READ, include_in_schema=False)
async def automation_page(request: Request[Any, Any, Any], project: str) -> Response[str]:
    return await render_automation(request, project)


async def render_webhook(
    request: Request[Any, Any, Any], project: str, webhook_id: str, status: int = 200, **shown: Any
) -> Response[str]:
    g, who = gw(request), viewer(request)
    project = _sees(who, project)
    row = await g.rm.webhook(webhook_id) if is_id(webhook_id, "whk") else None
    if row is None or row["project"] != project:
        raise not_found(f"webhook {webhook_id[:60]}")
    cursor = request.query_params.get("cursor") or None
    rows, next_cursor = await g.rm.deliveries(webhook_id, status=None, limit=DELIVERY_PAGE, cursor=cursor)
    return page(
        request,
        "webhook.html",
        status=status,
        project=project,
        webhook=webhook_view(row, whole_url=who.may("deploy", project)),
        deliveries=[delivery_view(r) for r in rows],
        next_url=f"?cursor={quote(next_cursor)}" if next_cursor else None,
        can_deploy=who.may("deploy", project),
        nav="projects",
        **({"secret": None, "refused": None} | shown),
    )


@get("/projects/{project:str}/webhooks/{webhook_id:str}", opt=READ, include_in_schema=False)
async def webhook_page(request: Request[Any, Any, Any], project: str, webhook_id: str) -> Response[str]:
    return await render_webhook(request, project, webhook_id)


@post("/projects/{project:str}/schedules/{schedule_id:str}/{action:str}", opt=DEPLOY, include_in_schema=False)
async def schedule_form(
    request: Request[Any, Any, Any], project: str, schedule_id: str, action: str
) -> Redirect:
    g, who = gw(request), viewer(request)
    await checked_form(request)
    project = _sees(who, project)
    if not who.may("deploy", project):
        raise ApiError(403, "forbidden", f"this API key's role ({who.role}) may not change schedules")
    if action == "pause":
        await change_schedule(g, project, schedule_id, lambda s: None if s.paused else SchedulePaused())
    elif action == "resume":
        await change_schedule(g, project, schedule_id, lambda s: ScheduleResumed() if s.paused else None)
    else:
        raise bad_request("a schedule can be paused or resumed here")
    await g.fresh()
    return Redirect(f"/projects/{quote(project)}/automation#schedules", status_code=303)


ROUTES = [automation_page, webhook_page, schedule_form]
