"""Deployments: upload a crew (gzip tarball) as a new version, read versions, follow a build.

Promotions and rollbacks are in :mod:`.versions`."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.openapi import ResponseSpec
from litestar.params import Parameter

from crewyard import packaging
from crewyard.contract.deployments import Deployment, DeploymentList
from crewyard.core import subjects
from crewyard.core.bounds import EnvironmentName
from crewyard.core.crewfile import CrewConfig, CrewConfigError
from crewyard.core.events import DeploymentCreated, DeploymentFailed, DeploymentReady, Event, make_event
from crewyard.core.ids import new_id
from crewyard.core.versions import DEFAULT_NAME, check_environment
from crewyard.readmodel import deployment_view
from crewyard.workspace import source_object

from .context import Gateway, IdempotencyKey, gw, project_name
from .errors import ApiError, bad_request
from .idempotency import first_event, same_request
from .openapi import RESUMING, TEXT, GzipUpload, answers, documented, param
from .sse import SSE, STREAM, closed_stream, resume_after, resume_from, stream_events

_enc = msgspec.json.Encoder()
_BUILD_END = {DeploymentReady.TYPE, DeploymentFailed.TYPE}
READ = {"role": "read"}


@post(
    "/v1/projects/{project:str}/deployments",
    status_code=202,
    request_max_body_size=None,
    opt={"role": "deploy", "body": "gzip"},
    operation_class=GzipUpload,
    responses={200: ResponseSpec(Deployment, description="A repeated upload (same Idempotency-Key)")},
)
async def create_deployment(
    request: Request[Any, Any, Any],
    project: str,
    idempotency_key: IdempotencyKey = None,
    name: Annotated[str | None, Parameter(description="The deployment name (crewyard.toml sections)")] = None,
    environment: Annotated[str | None, Parameter(description="production (default) or staging")] = None,
) -> Response[Deployment]:
    """Upload a crew as a new version of its deployment name; answers at once (202) while it
    builds (follow ``build_log_url``)."""
    g = gw(request)
    project = project_name(project)
    limit = g.settings.upload_limit_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "payload_too_large", f"upload is larger than the {limit}-byte limit")
    async with _spooled(request, g.settings.data_dir / "tmp", limit) as upload:
        env = check_environment(environment)
        try:
            checked = await asyncio.to_thread(packaging.check, upload, g.settings.archive_limits)
            config = checked.config.select(name)
        except packaging.ArchiveError as exc:
            raise ApiError(413 if exc.code == "payload_too_large" else 400, exc.code, str(exc)) from None
        except CrewConfigError as exc:
            raise bad_request(str(exc), "invalid_config") from None
        return await _create(g, project, upload, checked, config, env, idempotency_key)


@contextlib.asynccontextmanager
async def _spooled(request: Request[Any, Any, Any], folder: Path, limit: int) -> AsyncIterator[Path]:
    """The request body in a private temporary file (never all in memory), removed afterwards."""
    await asyncio.to_thread(folder.mkdir, mode=0o700, parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="upload-", dir=folder)
    path = Path(name)
    try:
        size = 0
        with os.fdopen(fd, "wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, "payload_too_large", f"upload is larger than the {limit}-byte limit")
                await asyncio.to_thread(out.write, chunk)
        if not size:
            raise bad_request("request body must be a gzip tarball of the crew folder", "invalid_archive")
        yield path
    finally:
        await asyncio.to_thread(path.unlink, True)


async def _create(
    g: Gateway,
    project: str,
    upload: Path,
    checked: packaging.CheckedArchive,
    config: CrewConfig,
    environment: EnvironmentName,
    key: str | None,
) -> Response[Deployment]:
    # The key is scoped to the project, as the event id derived from it.
    request_hash = (
        hashlib.sha256(f"{project}\0{config.name}\0{checked.digest}\0{environment}".encode()).hexdigest()
        if key
        else None
    )
    if key:
        earlier = await g.rm.deployment_by_idempotency_key(project, key)
        if earlier is not None:
            return await _replayed(g, earlier, request_hash)
    await g.ensure_project(project)
    name = source_object(checked.digest)
    if not await g.objects.exists(name):
        await g.objects.put_file(name, upload)
    dep_id = new_id("dep")
    created = DeploymentCreated(
        source_digest=checked.digest,
        source_size=checked.size,
        config=msgspec.to_builtins(config),
        name=config.name or DEFAULT_NAME,
        environment=environment,
        idempotency_key=key,
        request_hash=request_hash,
    )
    # With a key the event id comes from it: the server drops a concurrent duplicate.
    digest = hashlib.sha256(f"{project}\0{key}".encode()).hexdigest()[:40] if key else ""
    event_id = "evt_idem_dep_" + digest if key else new_id("evt")
    event = make_event(created, project=project, aggregate_id=dep_id, event_id=event_id)
    # Answered from the stream's acknowledgement and the event sent, never by reading the write
    # back (in a cluster a replica may not have it yet).
    appended = await g.store.append_acked(event, expected_seq=0)
    if appended.duplicate:  # a concurrent upload with the same key won: answer with its deployment
        return await _original(g, appended.seq, request_hash)
    await g.rm.wait_for(appended.seq)  # read-your-writes on this gateway, if the projector is quick
    view = await g.rm.deployment(dep_id) or _accepted(event)
    view["warnings"] = checked.config.warnings
    view["build_log_url"] = f"/v1/deployments/{dep_id}/build-log"
    return Response(msgspec.convert(view, Deployment), status_code=202)


def _accepted(event: Event) -> dict[str, Any]:
    """The version as the read model will show it once it has applied ``event`` (its number is
    the read model's to give: None until then)."""
    created = event.data
    assert isinstance(created, DeploymentCreated)
    row = dict.fromkeys(
        ("ready_at", "backend", "image", "env_digest", "cached", "build_duration_ms", "version_number")
    )
    row |= {
        "id": event.aggregate_id,
        "project": event.project,
        "name": created.name,
        "status": "building",
        "environment": created.environment,
        "source_digest": created.source_digest,
        "source_size": created.source_size,
        "config": _enc.encode(created.config),
        "created_at": event.time.isoformat(),
        "error_message": None,
    }
    return deployment_view(row, environments=[])


async def _original(g: Gateway, seq: int, request_hash: str | None) -> Response[Deployment]:
    """The deployment that first used an Idempotency-Key, from its event at ``seq`` (read from the
    stream's leader, which has every acknowledged event)."""
    original = await first_event(g, seq, DeploymentCreated, request_hash, "upload")
    await g.rm.wait_for(seq)
    view = await g.rm.deployment(original.aggregate_id) or _accepted(original)
    return Response(msgspec.convert(view, Deployment), status_code=200)


async def _replayed(g: Gateway, earlier: dict[str, Any], request_hash: str | None) -> Response[Deployment]:
    same_request(earlier.get("request_hash"), request_hash, "upload")
    return Response(msgspec.convert(await g.deployment(earlier["id"]), Deployment), status_code=200)


@get("/v1/deployments/{dep_id:str}", opt=READ, responses=answers(Deployment))
async def get_deployment(request: Request[Any, Any, Any], dep_id: str) -> dict[str, Any]:
    return await gw(request).deployment(dep_id)


@get(
    "/v1/projects/{project:str}/deployments",
    opt=READ,
    responses=answers(DeploymentList),
    operation_class=documented(param("name", TEXT, "Only this deployment name's versions")),
)
async def list_deployments(request: Request[Any, Any, Any], project: str) -> dict[str, Any]:
    """A project's versions, newest first (``?name=`` one deployment name's)."""
    g = gw(request)
    await g.project(project_name(project))
    return {"deployments": await g.rm.deployments(project, request.query_params.get("name"))}


@get(
    "/v1/deployments/{dep_id:str}/build-log", opt=STREAM, responses=SSE, operation_class=documented(*RESUMING)
)
async def build_log(request: Request[Any, Any, Any], dep_id: str) -> Any:
    g = gw(request)
    after = resume_after(request)
    dep = await g.deployment(dep_id)  # either spelling of the id (dep_… or ver_…)
    filt = subjects.aggregate_filter(dep["project"], "deployment", dep["deployment_id"], g.store.prefix)
    start = await resume_from(g.store, filt, after, ended=dep["status"] != "building")
    if start is None:
        return closed_stream()  # seen to its end
    return await stream_events(
        g.store,
        filt,
        start,
        ping_s=g.settings.sse_ping_s,
        is_last=lambda t: t in _BUILD_END,
        stream="build",
        closing=g.closing,
    )


ROUTES = [create_deployment, get_deployment, list_deployments, build_log]
