"""The API's operations as data (method, path, query, body, answer type), shared by the sync and
the async client so that both say exactly the same thing to the server."""

from __future__ import annotations

from typing import Any, NamedTuple
from urllib.parse import quote

import msgspec

from crewyard.contract.deployments import Deployment, DeploymentList, Rollback
from crewyard.contract.projects import EnvChanged, EnvList, EnvValue, Limits, LimitsSet, Project, ProjectList
from crewyard.contract.runs import ArtifactList, CancelResult, Run, RunCreate, RunPage
from crewyard.contract.threads import (
    Thread,
    ThreadCreate,
    ThreadDeleted,
    ThreadHistory,
    ThreadList,
    ThreadRunCreate,
    ThreadRunStarted,
)
from crewyard.contract.versions import DeploymentOverview, EnvironmentRollback, PointerMoved, Promote

from ._errors import ClientError, looks_like_html, not_utf8


def seg(value: str) -> str:
    """``value`` as one URL path segment: a project or key can never reach another route."""
    try:
        return quote(value, safe="")
    except UnicodeEncodeError:
        raise not_utf8() from None


class Op(NamedTuple):
    method: str
    path: str
    answer: type[Any]
    params: dict[str, Any] | None = None
    body: Any = None
    #: What an empty answer (204) means, for the operations a server may answer so.
    empty: Any = None


def encode(body: msgspec.Struct) -> Any:
    """A request Struct as the JSON object to send (fields left at None are not sent)."""
    return {k: v for k, v in msgspec.to_builtins(body).items() if v is not None}


def _web_page(method: str, path: str) -> ClientError:
    return ClientError(
        f"the API answered {method} {path} with a web page, not JSON: is this a crewyard API's address?"
    )


def decode(op: Op, content: bytes) -> Any:
    if not content.strip() and op.empty is not None:
        return op.empty
    try:
        answer = msgspec.json.decode(content or b"{}", type=op.answer)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        if looks_like_html(content):
            raise _web_page(op.method, op.path) from None
        raise ClientError(
            f"the API answered {op.method} {op.path} with something this client cannot read: {exc}"
        ) from None
    if isinstance(answer, Run) and not answer.id:  # every field has a default: {} reads as a run
        raise ClientError(
            f"the API answered {op.method} {op.path} with no run (no id): is this a crewyard API's address?"
        )
    # The same for a deployment: {} read as one with no id ("✓  is the current deployment again").
    deployments = [answer] if isinstance(answer, Deployment) else []
    if isinstance(answer, DeploymentList):
        deployments = answer.deployments
    if any(not d.id for d in deployments):
        raise ClientError(
            f"the API answered {op.method} {op.path} with no deployment (no id): is this a crewyard API's"
            " address?"
        )
    return answer


def json_object(method: str, path: str, content: bytes) -> dict[str, Any]:
    """An answer that must be a JSON object (an empty one, e.g. a 204, reads as ``{}``)."""
    if not content.strip():
        return {}
    try:
        value = msgspec.json.decode(content)
    except msgspec.DecodeError:
        value = None
    if not isinstance(value, dict):
        if looks_like_html(content):
            raise _web_page(method, path)
        raise ClientError(f"the API answered {method} {path} with no JSON object")
    return value


def get_run(run_id: str) -> Op:
    return Op("GET", f"/v1/runs/{seg(run_id)}", Run)


def list_runs(
    project: str | None,
    status: str | None,
    limit: int,
    cursor: str | None,
    full: bool = False,
    deployment_id: str | None = None,
) -> Op:
    query = {
        "project": project,
        "deployment_id": deployment_id,
        "status": status,
        "limit": limit,
        "cursor": cursor,
    }
    return Op("GET", "/v1/runs", RunPage, {**query, "full": "true"} if full else query)


def create_run(create: RunCreate) -> Op:
    return Op("POST", "/v1/runs", Run, body=encode(create))


def cancel_run(run_id: str) -> Op:
    return Op("POST", f"/v1/runs/{seg(run_id)}/cancel", CancelResult)


def list_artifacts(run_id: str) -> Op:
    return Op("GET", f"/v1/runs/{seg(run_id)}/artifacts", ArtifactList)


def artifact_path(run_id: str, name: str) -> str:
    return f"/v1/runs/{seg(run_id)}/artifacts/{quote(name, safe='/')}"


def get_deployment(dep_id: str) -> Op:
    return Op("GET", f"/v1/deployments/{seg(dep_id)}", Deployment)


def list_deployments(project: str, name: str | None = None) -> Op:
    return Op("GET", f"/v1/projects/{seg(project)}/deployments", DeploymentList, {"name": name})


def get_deployment_name(project: str, name: str) -> Op:
    return Op("GET", f"/v1/projects/{seg(project)}/deployments/{seg(name)}", DeploymentOverview)


def promote(project: str, name: str, promote: Promote) -> Op:
    path = f"/v1/projects/{seg(project)}/deployments/{seg(name)}/promote"
    return Op("POST", path, PointerMoved, body=encode(promote))


def rollback_environment(project: str, name: str, rollback: EnvironmentRollback) -> Op:
    path = f"/v1/projects/{seg(project)}/deployments/{seg(name)}/rollback"
    return Op("POST", path, PointerMoved, body=encode(rollback))


def upload_path(project: str) -> str:
    return f"/v1/projects/{seg(project)}/deployments"


def rollback(project: str, deployment_id: str, environment: str | None = None) -> Op:
    return Op(
        "POST",
        f"/v1/projects/{seg(project)}/rollback",
        Deployment,
        body=encode(Rollback(deployment_id=deployment_id, environment=environment)),
    )


def list_projects() -> Op:
    return Op("GET", "/v1/projects", ProjectList)


def get_project(name: str) -> Op:
    return Op("GET", f"/v1/projects/{seg(name)}", Project)


def set_env(project: str, key: str, value: str, environment: str | None = None) -> Op:
    body = encode(EnvValue(value=value, environment=environment))
    return Op("PUT", f"/v1/projects/{seg(project)}/env/{seg(key)}", EnvChanged, body=body)


def list_env(project: str) -> Op:
    return Op("GET", f"/v1/projects/{seg(project)}/env", EnvList)


def unset_env(project: str, key: str, environment: str | None = None) -> Op:
    path = f"/v1/projects/{seg(project)}/env/{seg(key)}"
    gone = EnvChanged(key=key, project=project, environment=environment, deleted=True)
    return Op("DELETE", path, EnvChanged, {"environment": environment}, empty=gone)


def set_limits(project: str, max_concurrent_runs: int | None) -> Op:
    # null is meaningful here (no limit): sent as is.
    return Op(
        "PUT",
        f"/v1/projects/{seg(project)}/limits",
        LimitsSet,
        body=msgspec.to_builtins(Limits(max_concurrent_runs=max_concurrent_runs)),
    )


def create_thread(create: ThreadCreate) -> Op:
    return Op("POST", "/v1/threads", Thread, body=encode(create))


def list_threads(project: str | None, name: str | None, status: str | None, limit: int, offset: int) -> Op:
    params = {"project": project, "name": name, "status": status, "limit": limit, "offset": offset}
    return Op("GET", "/v1/threads", ThreadList, params)


def get_thread(thread_id: str) -> Op:
    return Op("GET", f"/v1/threads/{seg(thread_id)}", Thread)


def run_thread(thread_id: str, body: ThreadRunCreate) -> Op:
    return Op("POST", f"/v1/threads/{seg(thread_id)}/runs", ThreadRunStarted, body=encode(body))


def thread_history(thread_id: str, limit: int, offset: int) -> Op:
    params = {"limit": limit, "offset": offset}
    return Op("GET", f"/v1/threads/{seg(thread_id)}/history", ThreadHistory, params)


def copy_thread(thread_id: str) -> Op:
    return Op("POST", f"/v1/threads/{seg(thread_id)}/copy", Thread)


def delete_thread(thread_id: str) -> Op:
    return Op("DELETE", f"/v1/threads/{seg(thread_id)}", ThreadDeleted)


FINAL_RUN_STATUSES = frozenset({"succeeded", "failed", "canceled"})
FINAL_BUILD_STATUSES = frozenset({"ready", "failed"})
