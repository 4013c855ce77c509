"""Outside consumers (the admin role): NATS credentials that replay and follow one project's runs
and deployments, read-only. The list (revoked ones too), a form that issues credentials (the
``.creds`` file is shown on the answer this once), revoke with a confirmation."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.response import Redirect

from crewyard.contract.keys import ConsumerCreate

from .. import keys as api
from ..access import visible_project
from ..context import gw
from .csrf import checked_form
from .forms import EXPIRY_DAYS, Refused, call_route, expires_at, typed
from .keys import ADMIN, ADMIN_FORM
from .render import page


async def _render(request: Request[Any, Any, Any], status: int = 200, **shown: Any) -> Response[str]:
    g = gw(request)
    listed = await call_route(api.list_consumers, request, project=None)
    _, only = visible_project(request)
    projects = [p["name"] for p in await g.rm.projects() if only is None or p["name"] == only]
    return page(
        request,
        "consumers.html",
        status=status,
        consumers=sorted(listed.consumers, key=lambda c: c.created_at, reverse=True),
        projects=projects,
        issuing=g.consumers is not None,
        expiry_days=EXPIRY_DAYS,
        nav="consumers",
        **({"created": None, "refused": None} | shown),
    )


@get("/consumers", opt=ADMIN, include_in_schema=False)
async def consumers_page(request: Request[Any, Any, Any]) -> Response[str]:
    return await _render(request)


@post("/consumers", opt=ADMIN_FORM, include_in_schema=False)
async def create_form(request: Request[Any, Any, Any]) -> Response[str]:
    """The answer shows the credentials this once (the page is never cached)."""
    form = await checked_form(request)
    try:
        expires = expires_at(form)
        fields = {
            "project": form.get("project", ""),
            "name": form.get("name", "").strip(),
            "expires_at": expires.isoformat() if expires else None,
        }
        made = await call_route(api.create_consumer, request, data=typed(ConsumerCreate, fields))
    except Refused as exc:
        return await _render(request, status=exc.status, refused={"message": exc.message, "fields": form})
    return await _render(request, status=201, created=made)


@post("/consumers/{consumer_id:str}/revoke", opt=ADMIN_FORM, include_in_schema=False)
async def revoke_form(request: Request[Any, Any, Any], consumer_id: str) -> Response[Any]:
    await checked_form(request)
    try:
        await call_route(api.revoke_consumer, request, consumer_id=consumer_id)
    except Refused as exc:
        return await _render(request, status=exc.status, refused={"message": exc.message, "fields": {}})
    return Redirect("/consumers", status_code=303)


ROUTES = [consumers_page, create_form, revoke_form]
