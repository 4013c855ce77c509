"""API keys (the admin role): every key the viewer may manage, create one (shown once, on the
answer to the form, never again), revoke one with a confirmation (and, if asked, the keys made
from it)."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Request, Response, get, post
from litestar.response import Redirect

from crewyard.core.access import ROLES

from ..access import platform_wide, visible_project
from ..context import gw, project_name
from ..errors import bad_request
from ..keys import key_view as view
from ..keys import make_key, registry_of, revoke
from .csrf import checked_form
from .forms import EXPIRY_DAYS, Refused, expires_at
from .render import page

ADMIN = {"role": "admin", "page": True}
ADMIN_FORM = {"role": "admin", "page": True, "form": True}


async def _render(request: Request[Any, Any, Any], status: int = 200, **extra: Any) -> Response[str]:
    registry = registry_of(gw(request))
    shown, only = visible_project(request)
    keys = [] if not shown else [k for k in registry.keys.values() if only is None or k.project == only]
    keys.sort(key=lambda k: k.created_at, reverse=True)
    used = await asyncio.gather(*(registry.last_used(k.key_id) for k in keys))
    return page(
        request,
        "keys.html",
        status=status,
        keys=[view(request, k, u) for k, u in zip(keys, used, strict=True)],
        # How many live keys each was made into: its revoke form offers to end those too.
        made=registry.live_made_counts(),
        roles=ROLES,
        expiry_days=EXPIRY_DAYS,
        platform=platform_wide(request),
        only=only,
        nav="keys",
        **({"created": None} | extra),
    )


@get("/keys", opt=ADMIN, include_in_schema=False)
async def keys_page(request: Request[Any, Any, Any]) -> Response[str]:
    return await _render(request)


@post("/keys", opt=ADMIN_FORM, include_in_schema=False)
async def create_form(request: Request[Any, Any, Any]) -> Response[str]:
    """The answer shows the new key this once (the page is never cached)."""
    form = await checked_form(request)
    role = form.get("role", "")
    if role not in ROLES:
        raise bad_request(f"role must be one of {', '.join(ROLES)}")
    project = project_name(form["project"]) if form.get("project") else None
    try:
        expires = expires_at(form)
    except Refused as exc:
        raise bad_request(exc.message) from None
    name = (form.get("name") or "key").strip()[:100] or "key"
    created = await make_key(request, role=role, project=project, name=name, expires_at=expires)
    return await _render(request, status=201, created=created)


@post("/keys/{key_id:str}/revoke", opt=ADMIN_FORM, include_in_schema=False)
async def revoke_form(request: Request[Any, Any, Any], key_id: str) -> Redirect:
    form = await checked_form(request)
    await revoke(request, key_id, cascade=form.get("cascade") == "1")
    return Redirect("/keys", status_code=303)


ROUTES = [keys_page, create_form, revoke_form]
