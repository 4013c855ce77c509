"""Deployment names and their environments: see what runs where, promote, roll back.

A promotion or rollback appends one ``deployment.promoted`` to the project; nothing is rebuilt,
the next run of that environment runs the version. The decision is made on the project's versions
and pointers as the stream has them now (``crewyard.versions.read_versions``: a current read, not
the read model nor a replica that is behind), and its append expects the last event of exactly
what it read (every version's created/ready/failed and every promotion of the project): a pointer
that moved meanwhile, through any gateway or by a version becoming ready, fails the append, and
the decision is made again on a fresh read (a few times, then a 409). Expecting the project
aggregate alone missed a version becoming ready, which a rollback decided before it then undid.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import msgspec
from litestar import Request, get, post

from crewyard.contract.deployments import Deployment, Rollback
from crewyard.contract.versions import DeploymentOverview, EnvironmentRollback, PointerMoved, Promote
from crewyard.core import subjects
from crewyard.core import versions as core
from crewyard.core.events import DeploymentPromoted, ProjectCreated
from crewyard.core.ids import deployment_id as stored_id
from crewyard.eventstore import ConcurrencyConflict
from crewyard.versions import read_versions

from .context import Gateway, gw, project_name
from .errors import bad_request, conflict, not_found

READ, DEPLOY = {"role": "read"}, {"role": "deploy"}
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
#: Decisions made on a fresh read after another writer moved the project's versions first.
ATTEMPTS = 5


def deployment_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise bad_request(f"invalid deployment name {name!r}", "invalid_name")
    return name


async def move_pointer(
    g: Gateway, project: str, decide: Callable[[core.Versions], DeploymentPromoted]
) -> PointerMoved:
    """Decide on the project's current versions and append expecting exactly what was read,
    again on a fresh read if a version or pointer changed meanwhile."""
    created = subjects.event_subject(project, "project", project, ProjectCreated.TYPE, g.store.prefix)
    if await g.store.last_seq_of(created) is None:  # from the stream's leader: it never goes away
        raise not_found(f"project {project}")
    for _ in range(ATTEMPTS):
        view = await read_versions(g.store, project)
        promoted = decide(view.state)
        try:
            await g.commit_payload(promoted, project, project, view.seq, expected_over=view.over)
        except ConcurrencyConflict:
            continue
        version = view.state.versions[promoted.deployment_id]
        return PointerMoved(
            project=project,
            name=version.name,
            environment=promoted.environment,
            deployment_id=version.id,
            version_id=version.version_id,
            version_number=version.number,
            previous_deployment_id=promoted.previous_deployment_id,
            rollback=promoted.rollback,
        )
    raise conflict(f"the versions of project {project} kept changing; try again")


@get("/v1/projects/{project:str}/deployments/{name:str}", opt=READ)
async def get_deployment_name(request: Request[Any, Any, Any], project: str, name: str) -> DeploymentOverview:
    """A deployment name: which version each environment runs."""
    g = gw(request)
    project, name = project_name(project), deployment_name(name)
    view = await g.rm.deployment_overview(project, name)
    if view is None:
        await g.fresh()
        view = await g.rm.deployment_overview(project, name)
    if view is None:
        raise not_found(f"deployment {name} of project {project}")
    return DeploymentOverview(**view)


@post("/v1/projects/{project:str}/deployments/{name:str}/promote", status_code=200, opt=DEPLOY)
async def promote(request: Request[Any, Any, Any], project: str, name: str, data: Promote) -> PointerMoved:
    """Point ``to`` at ``from``'s version (or at ``version_id``) at once, without a rebuild."""
    project, name = project_name(project), deployment_name(name)
    target = stored_id(data.version_id) if data.version_id else None
    return await move_pointer(
        gw(request),
        project,
        lambda state: core.decide_promote(
            state, name, to=data.to, from_environment=data.from_, deployment_id=target
        ),
    )


@post("/v1/projects/{project:str}/deployments/{name:str}/rollback", status_code=200, opt=DEPLOY)
async def rollback_environment(
    request: Request[Any, Any, Any], project: str, name: str, data: EnvironmentRollback
) -> PointerMoved:
    """Move an environment back to the version it ran before (or to ``version_id``), at once."""
    project, name = project_name(project), deployment_name(name)
    target = stored_id(data.version_id) if data.version_id else None
    return await move_pointer(
        gw(request),
        project,
        lambda state: core.decide_rollback(state, name, environment=data.environment, deployment_id=target),
    )


@post("/v1/projects/{project:str}/rollback", status_code=200, opt=DEPLOY)
async def rollback(request: Request[Any, Any, Any], project: str, data: Rollback) -> Deployment:
    """``{"deployment_id", "environment"?}``: that environment (production) of the version's name
    runs the version again. Answers the version as ``GET /v1/deployments/{id}`` shows it."""
    g = gw(request)
    project = project_name(project)
    dep_id = stored_id(data.deployment_id)
    environment = core.check_environment(data.environment)
    dep = await g.deployment(dep_id)
    if dep["project"] != project:  # another project's: as if it did not exist (the same words)
        raise not_found(f"deployment {dep_id}")
    await move_pointer(
        g,
        project,
        lambda state: core.decide_rollback(state, dep["name"], environment=environment, deployment_id=dep_id),
    )
    return msgspec.convert(await g.deployment(dep_id), Deployment)


ROUTES = [get_deployment_name, promote, rollback_environment, rollback]
