"""Projects: their deployments (versions, environments, promote/rollback), one version with its
live build log, and environment variables (names only; values are never shown)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from litestar import Request, Response, get, post
from litestar.response import Redirect

from crewyard.core import versions as core
from crewyard.core.ids import deployment_id as stored_id

from ..context import gw, project_name
from ..errors import ApiError, bad_request, not_found
from ..projects import remove_env, store_env
from ..versions import deployment_name, move_pointer
from .csrf import checked_form
from .render import page, pretty
from .viewer import Viewer, viewer

READ, DEPLOY = {"role": "read", "page": True}, {"role": "deploy", "page": True}
ENVIRONMENTS = ("production", "staging")


def _sees(who: Viewer, project: str) -> str:
    project = project_name(project)
    if not who.sees(project):
        raise not_found(f"project {project}")
    return project


@get("/projects", opt=READ, include_in_schema=False)
async def projects_page(request: Request[Any, Any, Any]) -> Response[str]:
    g, who = gw(request), viewer(request)
    projects = [p for p in await g.rm.projects() if who.sees(p["name"])]
    return page(request, "projects.html", projects=projects, nav="projects")


@get("/projects/{project:str}", opt=READ, include_in_schema=False)
async def project_page(request: Request[Any, Any, Any], project: str) -> Response[str]:
    g, who = gw(request), viewer(request)
    proj = await g.project(_sees(who, project))
    versions = await g.rm.deployments(proj["name"])
    names: dict[str, list[dict[str, Any]]] = {}
    for version in versions:
        names.setdefault(version["name"], []).append(version)
    current: dict[tuple[str, str], int] = {}
    for version in versions:
        for env in version["environments"]:
            current[(version["name"], env)] = version["version_number"] or 0
    return page(
        request,
        "project.html",
        project=proj,
        names=names,
        current=current,
        env=await g.rm.env(proj["name"]),
        environments=ENVIRONMENTS,
        can_deploy=who.may("deploy", proj["name"]),
        nav="projects",
    )


@get("/deployments/{dep_id:str}", opt=READ, include_in_schema=False)
async def deployment_page(request: Request[Any, Any, Any], dep_id: str) -> Response[str]:
    g, who = gw(request), viewer(request)
    dep = await g.deployment(dep_id)
    if not who.sees(dep["project"]):
        raise not_found(f"deployment {stored_id(dep_id)}")
    return page(
        request,
        "deployment.html",
        dep=dep,
        config=pretty(dep["config"]),
        live=f"/live/deployments/{dep['id']}",
        nav="projects",
    )


def _environment(value: str | None) -> str:
    if value not in ENVIRONMENTS:
        raise bad_request("environment must be production or staging")
    return value


@post("/projects/{project:str}/deployments/{name:str}/point", opt=DEPLOY, include_in_schema=False)
async def point_form(request: Request[Any, Any, Any], project: str, name: str) -> Redirect:
    """Make a version what an environment runs: a rollback when it is older than the one there
    now, a promotion otherwise (both at once, nothing is rebuilt)."""
    g, who = gw(request), viewer(request)
    form = await checked_form(request)
    project, name = _sees(who, project), deployment_name(name)
    if not who.may("deploy", project):
        raise ApiError(403, "forbidden", f"this API key's role ({who.role}) may not move versions")
    environment = _environment(form.get("environment"))
    dep = await g.deployment(form.get("version", ""))
    if dep["project"] != project:  # another project's: in the words of one that does not exist
        raise not_found(f"deployment {dep['id']}")
    if dep["name"] != name:
        raise not_found(f"version {dep['id']} of {name}")
    dep_id = dep["id"]
    if form.get("rollback") == "1":
        await move_pointer(
            g, project, lambda s: core.decide_rollback(s, name, environment=environment, deployment_id=dep_id)
        )
    else:
        await move_pointer(
            g, project, lambda s: core.decide_promote(s, name, to=environment, deployment_id=dep_id)
        )
    return Redirect(f"/projects/{quote(project)}#deployment-{quote(name)}", status_code=303)


@post("/projects/{project:str}/env", opt=DEPLOY, include_in_schema=False)
async def env_set_form(request: Request[Any, Any, Any], project: str) -> Redirect:
    g, who = gw(request), viewer(request)
    form = await checked_form(request)
    project = _sees(who, project)
    if not who.may("deploy", project):
        raise ApiError(403, "forbidden", f"this API key's role ({who.role}) may not set variables")
    scope = form.get("environment") or None
    await store_env(g, project, form.get("key", "").strip(), form.get("value", ""), scope)
    return Redirect(f"/projects/{quote(project)}#env", status_code=303)


@post("/projects/{project:str}/env/{key:str}/unset", opt=DEPLOY, include_in_schema=False)
async def env_unset_form(request: Request[Any, Any, Any], project: str, key: str) -> Redirect:
    g, who = gw(request), viewer(request)
    form = await checked_form(request)
    project = _sees(who, project)
    if not who.may("deploy", project):
        raise ApiError(403, "forbidden", f"this API key's role ({who.role}) may not unset variables")
    await remove_env(g, project, key, form.get("environment") or None)
    return Redirect(f"/projects/{quote(project)}#env", status_code=303)


ROUTES = [projects_page, project_page, deployment_page, point_form, env_set_form, env_unset_form]
