"""Runs: the live list, one run with its live timeline, cancel, artifact previews."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

import msgspec
from litestar import Request, Response, get, post
from litestar.response import Redirect

from crewyard.core.ids import deployment_id as stored_id
from crewyard.core.ids import is_id
from crewyard.workspace import artifact_object

from ..context import Gateway, gw, project_name
from ..errors import ApiError, bad_request, not_found
from ..runs import request_cancel
from . import previews
from .csrf import checked_form
from .render import page
from .viewer import Viewer, viewer

READ, RUN = {"role": "read", "page": True}, {"role": "run", "page": True}
PAGE_SIZE = 25
STATUSES = ("pending", "running", "succeeded", "failed", "canceled")
ACTIVE = ("pending", "running")
_json = msgspec.json.Decoder()


async def _names(g: Gateway, runs: list[dict[str, Any]]) -> dict[str, str]:
    """The deployment name of each version the runs ran."""
    names: dict[str, str] = {}
    for dep_id in {r["deployment_id"] for r in runs}:
        dep = await g.rm.deployment(dep_id)
        names[dep_id] = dep["name"] if dep else ""
    return names


def run_filters(request: Request[Any, Any, Any], who: Viewer) -> dict[str, str]:
    """The list's filters from the query, checked (a bad value is a 400, never a query)."""
    q = request.query_params
    project, status, deployment = q.get("project") or "", q.get("status") or "", q.get("deployment") or ""
    if status and status not in STATUSES:
        raise bad_request(f"unknown status {status[:40]!r}")
    if project:
        project = project_name(project)  # it goes into the live list's subject filter
    if deployment:
        deployment = stored_id(deployment)
        if not is_id(deployment, "dep"):
            raise bad_request("deployment must be a version id (dep_… or ver_…)")
    if who.project is not None and not project:
        project = who.project
    return {"project": project, "status": status, "deployment": deployment}


def matches(run: dict[str, Any], filters: dict[str, str]) -> bool:
    return all(
        not filters[f] or run[col] == filters[f]
        for f, col in (("project", "project"), ("status", "status"), ("deployment", "deployment_id"))
    )


@get("/", opt=READ, include_in_schema=False)
async def runs_page(request: Request[Any, Any, Any]) -> Response[str]:
    g, who = gw(request), viewer(request)
    filters = run_filters(request, who)
    cursor = request.query_params.get("cursor") or None
    if cursor is not None and not is_id(cursor, "run"):
        raise bad_request("cursor must be a run id")
    # The position first: the rows hold at least everything up to it, and the live feed starts
    # right after it, so nothing that happens meanwhile is missed (a row sent twice is replaced).
    position = await g.rm.position()
    runs: list[dict[str, Any]] = []
    next_cursor = None
    if who.sees(filters["project"]) if filters["project"] else who.project is None:
        page_json, next_cursor = await g.rm.runs(
            project=filters["project"] or None,
            status=filters["status"] or None,
            deployment_id=filters["deployment"] or None,
            limit=PAGE_SIZE,
            cursor=cursor,
        )
        runs = _json.decode(page_json)
    projects = [p["name"] for p in await g.rm.projects() if who.sees(p["name"])]
    query = {k: v for k, v in filters.items() if v}
    live = "/live/runs?" + urlencode({**query, "after": position, "first": "" if cursor else "1"})
    return page(
        request,
        "runs.html",
        runs=runs,
        names=await _names(g, runs),
        filters=filters,
        statuses=STATUSES,
        projects=projects,
        live=live,
        first_page=cursor is None,
        next_url=("/?" + urlencode({**query, "cursor": next_cursor})) if next_cursor else None,
        first_url="/?" + urlencode(query),
        nav="runs",
    )


async def visible_run(g: Gateway, who: Viewer, run_id: str) -> dict[str, Any]:
    run = await g.run(run_id)
    if not who.sees(run["project"]):
        raise not_found(f"run {run_id}")
    return run


@get("/runs/{run_id:str}", opt=READ, include_in_schema=False)
async def run_page(request: Request[Any, Any, Any], run_id: str) -> Response[str]:
    g, who = gw(request), viewer(request)
    run = await visible_run(g, who, run_id)
    dep = await g.rm.deployment(run["deployment_id"])
    return page(
        request,
        "run.html",
        run=_decoded(run),
        name=dep["name"] if dep else "",
        artifacts=await g.rm.artifacts(run_id),
        live=f"/live/runs/{run_id}",
        # While the run goes on, the page follows its newest events (unless the reader scrolls
        # up); a finished run's page stays at its top.
        follow=run["status"] in ("pending", "running"),
        nav="runs",
    )


def _decoded(run: dict[str, Any]) -> dict[str, Any]:
    """The run with its stored JSON (input, output) as values."""
    out = dict(run)
    for key in ("input", "output"):
        if isinstance(out.get(key), msgspec.Raw):
            out[key] = _json.decode(out[key])
    return out


@post("/runs/{run_id:str}/cancel", opt=RUN, include_in_schema=False)
async def cancel_form(request: Request[Any, Any, Any], run_id: str) -> Redirect:
    g, who = gw(request), viewer(request)
    await checked_form(request)
    run = await visible_run(g, who, run_id)
    if not who.may("run", run["project"]):
        raise ApiError(403, "forbidden", f"this API key's role ({who.role}) may not cancel runs")
    await request_cancel(g, run_id, reason="requested", quiet=True)
    return Redirect(f"/runs/{quote(run_id)}", status_code=303)


@get("/runs/{run_id:str}/artifacts/{name:path}", opt=READ, include_in_schema=False)
async def artifact_page(request: Request[Any, Any, Any], run_id: str, name: str) -> Response[str]:
    g, who = gw(request), viewer(request)
    run = await visible_run(g, who, run_id)
    name = name.lstrip("/")
    art = await g.rm.artifact(run_id, name)
    if art is None:
        raise not_found(f"artifact {name[:200]} of run {run_id}")
    size = int(art["size"])
    kind = previews.kind_of(name, art["content_type"])
    body = b""
    if kind not in ("image", "none") and size:
        chunks = [
            c
            async for c in g.objects.stream(
                artifact_object(art["sha256"]), 0, min(size, previews.PREVIEW_BYTES)
            )
        ]
        body = b"".join(chunks)
    files = f"/v1/runs/{quote(run_id)}/artifacts"
    return page(
        request,
        "artifact.html",
        run=run,
        art=art,
        preview=previews.build(name, art["content_type"], body, size, files),
        file_url=f"{files}/{quote(name)}",
        nav="runs",
    )


ROUTES = [runs_page, run_page, cancel_form, artifact_page]
