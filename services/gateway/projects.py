"""Projects and their environment variables (values are encrypted and never returned)."""

from __future__ import annotations

from typing import Any

from litestar import Request, delete, get, put

from crewyard.contract.projects import EnvChanged, EnvList, EnvValue, Limits, LimitsSet, Project, ProjectList
from crewyard.core.deployment_state import fold_project, sealed_name
from crewyard.core.envnames import NAME_RE, name_problem, value_problem
from crewyard.core.events import EnvSet, EnvUnset, ProjectLimitsSet, shown_to_clients
from crewyard.core.subjects import event_type_of
from crewyard.core.versions import check_environment

from .access import visible_project
from .context import Gateway, gw, project_name
from .errors import bad_request, not_found
from .openapi import RESUMING, TEXT, OptionalBody, answers, documented, param
from .sse import SSE, STREAM, resume_after, stream_events

READ, DEPLOY = {"role": "read"}, {"role": "deploy"}


def _key(key: str) -> str:
    problem = name_problem(key)
    if problem is not None:
        raise bad_request(problem, "invalid_key")
    return key


def _stored_key(key: str) -> str:
    """A name to delete: one refused today (``LD_PRELOAD`` stored earlier) may still be removed."""
    if not NAME_RE.fullmatch(key):
        raise bad_request(
            f"invalid environment variable name {key!r}: use letters, digits and _", "invalid_key"
        )
    return key


@get("/v1/projects", opt=READ, responses=answers(ProjectList))
async def list_projects(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The projects the key may see (one, for a project's key)."""
    _, only = visible_project(request)
    projects = await gw(request).rm.projects()
    return {"projects": [p for p in projects if only is None or p["name"] == only]}


@get("/v1/projects/{project:str}", opt=READ, responses=answers(Project))
async def get_project(request: Request[Any, Any, Any], project: str) -> dict[str, Any]:
    return await gw(request).project(project_name(project))


@put("/v1/projects/{project:str}/env/{key:str}", opt=DEPLOY)
async def set_env(request: Request[Any, Any, Any], project: str, key: str, data: EnvValue) -> EnvChanged:
    """``{"value", "environment"?}``: with an environment, the value applies to runs in that
    environment only (over an unscoped value of the same name)."""
    return EnvChanged(**await store_env(gw(request), project, key, data.value, data.environment))


async def store_env(g: Gateway, project: str, key: str, value: str, scope: str | None) -> dict[str, Any]:
    """Set one variable (encrypted before it is appended); the checks every caller needs."""
    project, key = project_name(project), _key(key)
    environment = check_environment(scope) if scope is not None else None
    if (problem := value_problem(key, value)) is not None:
        raise bad_request(problem)
    await g.ensure_project(project)
    sealed = g.secrets.encrypt(project, sealed_name(key, environment), value)
    await g.commit_payload(EnvSet(key=key, value=sealed, environment=environment), project, project, None)
    return {"key": key, "project": project, "environment": environment}


@put("/v1/projects/{project:str}/limits", opt=DEPLOY, operation_class=OptionalBody)
async def set_limits(request: Request[Any, Any, Any], project: str, data: Limits | None = None) -> LimitsSet:
    """``{"max_concurrent_runs": n | null}``: at most n runs of the project at once (null, or no
    body: no limit)."""
    g = gw(request)
    project = project_name(project)
    limit = data.max_concurrent_runs if data is not None else None
    await g.ensure_project(project)
    await g.commit_payload(ProjectLimitsSet(max_concurrent_runs=limit), project, project, None)
    return LimitsSet(project=project, max_concurrent_runs=limit)


@get("/v1/projects/{project:str}/env", opt=READ, responses=answers(EnvList))
async def list_env(request: Request[Any, Any, Any], project: str) -> dict[str, Any]:
    g = gw(request)
    await g.project(project_name(project))
    return {"env": await g.rm.env(project)}


@delete(
    "/v1/projects/{project:str}/env/{key:str}",
    status_code=200,
    opt=DEPLOY,
    responses=answers(EnvChanged),
    operation_class=documented(param("environment", TEXT, "Remove that environment's own value")),
)
async def unset_env(request: Request[Any, Any, Any], project: str, key: str) -> dict[str, Any]:
    """``?environment=``: remove that environment's own value (default: the unscoped one)."""
    return await remove_env(gw(request), project, key, request.query_params.get("environment"))


async def remove_env(g: Gateway, project: str, key: str, scope: str | None) -> dict[str, Any]:
    """Unset one variable (its value for one environment with ``scope``)."""
    project, key = project_name(project), _stored_key(key)
    environment = check_environment(scope) if scope else None
    state = fold_project(project, await g.store.load(project, "project", project))
    if not state.has_env(key, environment):
        where = f" in {environment}" if environment else ""
        raise not_found(f"environment variable {key}{where} of project {project}")
    await g.commit_payload(EnvUnset(key=key, environment=environment), project, project, None)
    return {"key": key, "project": project, "environment": environment, "deleted": True}


@get("/v1/projects/{project:str}/events", opt=STREAM, responses=SSE, operation_class=documented(*RESUMING))
async def project_events(request: Request[Any, Any, Any], project: str) -> Any:
    """Every event of a project, live; with Last-Event-ID / ?after= it resumes, else starts now.
    Events that carry secrets (env values, even encrypted, and those older streams keep under
    the project; webhook and trigger secrets, webhook URLs) are left out."""
    g = gw(request)
    project = project_name(project)
    after = resume_after(request)
    start = after + 1 if after is not None else await g.store.last_seq() + 1
    return await stream_events(
        g.store,
        f"{g.store.prefix}.{project}.>",
        start,
        ping_s=g.settings.sse_ping_s,
        stream="project",
        closing=g.closing,
        keep=lambda raw: shown_to_clients(event_type_of(raw.subject, g.store.prefix) or ""),
    )


ROUTES = [list_projects, get_project, set_env, set_limits, list_env, unset_env, project_events]
