"""Runs: invoke, read, list, cancel, stream events, list and download artifacts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, get_args
from urllib.parse import quote

import msgspec
from litestar import Request, Response, get, post
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.response import Stream
from litestar.types import ASGIApp

from crewyard.contract.common import NoFields
from crewyard.contract.runs import (
    MAX_RUNS_PAGE,
    ArtifactList,
    CancelResult,
    Run,
    RunCreate,
    RunPage,
    RunStatus,
)
from crewyard.core import run_state as rs
from crewyard.core import subjects
from crewyard.core.events import TERMINAL_TYPES, Event, RunQueued, make_event
from crewyard.core.ids import deployment_id as stored_id
from crewyard.core.ids import is_id, new_id, version_id
from crewyard.core.versions import Resolved
from crewyard.eventstore import ConcurrencyConflict
from crewyard.launch import idempotent_event_id
from crewyard.readmodel import run_view
from crewyard.threads import settle
from crewyard.workspace import artifact_object

from .access import allow, require_role, visible_project
from .context import Gateway, IdempotencyKey, gw, project_name
from .errors import ApiError, bad_request, check_input_size, conflict, not_found
from .feedstream import FeedStream
from .idempotency import body_hash, first_event, same_request
from .openapi import (
    FLAG,
    RESUMING,
    TEXT,
    BinaryDownload,
    JsonBytes,
    OptionalBody,
    answers,
    documented,
    page_size,
    param,
)
from .ranges import Unsatisfiable, byte_range, etag_matches
from .sse import SSE, STREAM, closed_stream, resume_after, resume_from

READ, RUN = {"role": "read"}, {"role": "run"}
_enc = msgspec.json.Encoder(order="sorted")
_STATUSES = tuple(get_args(RunStatus))
_RUN_LISTING = documented(
    param("project", TEXT, "Only this project's runs"),
    param("deployment_id", TEXT, "Only this version's runs (dep_… or ver_…; 404 if there is none)"),
    param("status", Schema(type=OpenAPIType.STRING, enum=list(_STATUSES)), "Only runs in this state"),
    page_size(20, MAX_RUNS_PAGE),
    param("cursor", TEXT, "A page's next_cursor: the page after it"),
    param("full", FLAG, "With each run's input and output, and its error message whole"),
)
_RUN_EVENTS = documented(
    *RESUMING, param("cancel_on_disconnect", FLAG, "Cancel the run when this client goes away before it ends")
)


async def resolve_target(g: Gateway, data: RunCreate, request: Request[Any, Any, Any]) -> Resolved:
    """The version a run request means: ``deployment_id`` (``dep_…`` or ``ver_…``) alone is that
    version; with ``environment``, that environment's version of its name; ``project`` (and
    ``name``) runs the name's version in ``environment`` (production by default). Another
    project's deployment or project is not found, as if it did not exist."""
    dep_id, project, name, environment = data.deployment_id, data.project, data.name, data.environment
    legacy = data.deployment  # the reference product's older field: an id or a project
    if legacy and not dep_id and not project:
        dep_id, project = (legacy, None) if is_id(stored_id(legacy), "dep") else (None, legacy)
    if dep_id and (project or name):
        raise bad_request("give either deployment_id or project (and name), not both")
    if dep_id:
        allow(request, (await g.deployment(dep_id))["project"], not_found(f"deployment {stored_id(dep_id)}"))
        return await g.resolve_version(project=None, deployment_id=dep_id, environment=environment)
    if not project:
        raise bad_request("deployment_id or project is required")
    allow(request, project_name(project))
    project = (await g.project(project))["name"]
    return await g.resolve_version(project=project, name=name, environment=environment)


@post(
    "/v1/runs",
    status_code=202,
    opt=RUN,
    responses={
        200: ResponseSpec(Run, description="A repeated request (same Idempotency-Key): the run it made")
    },
)
async def create_run(
    request: Request[Any, Any, Any], data: RunCreate, idempotency_key: IdempotencyKey = None
) -> Response[Run]:
    """Queue a run of a deployment's version; answers at once (202) with the run as accepted."""
    g = gw(request)
    check_input_size(data.input)
    key = idempotency_key
    # The hash is of the body as sent (unknown fields included), as it always was: a repeat
    # made before or after an upgrade matches its original.
    request_hash = body_hash(await request.json()) if key else None
    target = await resolve_target(g, data, request)
    dep_id, project = target.deployment_id, target.project
    if key:  # keys are scoped to the project: another project's same key is another request
        existing = await g.rm.run_by_idempotency_key(project, key)
        if existing is not None:
            return _replayed(existing, request_hash)
    run_id = new_id("run")
    queued = RunQueued(
        deployment_id=dep_id,
        input=data.input,
        timeout_s=data.timeout_s,
        idempotency_key=key,
        request_hash=request_hash,
        environment=target.environment,
        version_number=target.number,
    )
    # With a key, the event id is derived from it: a concurrent duplicate is dropped by the server.
    event_id = idempotent_event_id(project, key) if key else new_id("evt")
    event = make_event(queued, project=project, aggregate_id=run_id, event_id=event_id)
    # The answer comes from the stream's acknowledgement and the event sent, never from reading
    # the write back: in a cluster a replica may not have it yet.
    appended = await g.store.append_acked(event, expected_seq=0)
    if appended.duplicate:  # a concurrent request with the same key won: answer with its run
        return await _original(g, appended.seq, request_hash)
    await g.rm.wait_for(appended.seq)  # read-your-writes on this gateway, if the projector is quick
    # The answer describes the run as accepted; it may already be running by the time it is read.
    return Response(_accepted(event, target.name), status_code=202)


def _accepted(event: Event, name: str | None) -> Run:
    """The run as accepted, from its ``run.queued`` event (``name``: the deployment name, which
    the event does not carry; None when only the event is at hand)."""
    queued = event.data
    assert isinstance(queued, RunQueued)
    return Run(
        id=event.aggregate_id,
        run_id=event.aggregate_id,
        project=event.project,
        deployment_id=queued.deployment_id,
        version_id=version_id(queued.deployment_id),
        version_number=queued.version_number,
        environment=queued.environment,
        name=name,
        status="pending",
        input=queued.input,
        created_at=event.time.isoformat(),
        timeout_s=queued.timeout_s,
        events_url=f"/v1/runs/{event.aggregate_id}/events",
    )


async def _original(g: Gateway, seq: int, request_hash: str | None) -> Response[Run]:
    """The run that first used an Idempotency-Key, from its event at ``seq`` (read from the
    stream's leader, which has every acknowledged event)."""
    original = await first_event(g, seq, RunQueued, request_hash)
    await g.rm.wait_for(seq)
    row = await g.rm.run(original.aggregate_id)
    run = _run(row) if row is not None else _accepted(original, None)
    run.events_url = f"/v1/runs/{original.aggregate_id}/events"
    return Response(run, status_code=200)


def _replayed(row: dict[str, Any], request_hash: str | None) -> Response[Run]:
    same_request(row.get("request_hash"), request_hash)
    run = _run(run_view(row))
    run.events_url = f"/v1/runs/{run.id}/events"
    return Response(run, status_code=200)


def _run(view: dict[str, Any]) -> Run:
    """A run view of the read model (stored JSON kept raw) as the contract's type."""
    return msgspec.json.decode(_enc.encode(view), type=Run)


@get("/v1/runs/{run_id:str}", opt=READ, responses=answers(Run))
async def get_run(request: Request[Any, Any, Any], run_id: str) -> ASGIApp:
    return JsonBytes((await gw(request).run_json(run_id)).encode())


@get("/v1/runs", opt=READ, responses=answers(RunPage), operation_class=_RUN_LISTING)
async def list_runs(request: Request[Any, Any, Any]) -> ASGIApp:
    """Runs, newest first: ``project``, ``deployment_id`` (a version, either spelling: 404 if the
    key sees no such version), ``status``, ``limit`` (1 to 500, default 20), ``cursor`` (a page's
    ``next_cursor``). Each run as ``GET /v1/runs/{id}`` shows it but without ``input`` and
    ``output`` (what the crew was given and returned, often most of a run's size) and with an
    ``error_message`` over 1,000 characters cut there (an ellipsis ends it): ``full=true`` shows
    them whole, and its page ends once 16 MiB of runs are in it (at least one; follow
    ``next_cursor`` for the rest)."""
    q = request.query_params
    try:
        limit = int(q.get("limit", "20"))
    except ValueError:
        raise bad_request("limit must be a number") from None
    if not 1 <= limit <= MAX_RUNS_PAGE:
        raise bad_request(f"limit must be between 1 and {MAX_RUNS_PAGE}")
    status = q.get("status")
    if status and status not in _STATUSES:
        raise bad_request(f"unknown status {status!r}")
    full = q.get("full", "false").lower()
    if full not in ("true", "false", "1", "0"):
        raise bad_request("full must be true or false")
    cursor = q.get("cursor") or None
    if cursor is not None and not is_id(cursor, "run"):  # anything else would silently page from it
        raise bad_request("cursor must be a page's next_cursor (a run id)")
    g = gw(request)
    asked = q.get("project")
    version = q.get("deployment_id") or None
    if version is not None:  # one version's runs: as with any resource, 404 if it is not the key's
        dep = await g.deployment(version)
        allow(request, dep["project"], not_found(f"deployment {dep['deployment_id']}"))
        version = dep["deployment_id"]
    shown, project = visible_project(request, project_name(asked) if asked else None)
    runs, cursor = (
        await g.rm.runs(
            project=project,
            status=status,
            limit=limit,
            cursor=cursor,
            deployment_id=version,
            full=full in ("true", "1"),
        )
        if shown
        else (b"[]", None)
    )
    return JsonBytes(b"".join((b'{"runs":', runs, b',"next_cursor":', _enc.encode(cursor), b"}")))


async def request_cancel(g: Gateway, run_id: str, *, reason: str, quiet: bool = False) -> dict[str, Any]:
    if not is_id(run_id, "run"):  # it goes into a subject filter: only a well-formed id may
        raise not_found(f"run {run_id[:100]}")
    for _ in range(10):
        # The run's lifecycle only, and the append checked against it alone: a crew's own events
        # (tens of thousands, arriving all the time) neither load nor make the cancel conflict.
        state = rs.fold(run_id, await g.store.load_any("run", run_id, types=rs.LIFECYCLE))
        if not state.exists:
            # The load may come from a replica that does not have the run yet: the leader decides.
            filt = subjects.any_project_aggregate_filter("run", run_id, g.store.prefix)
            if await g.store.last_seq_of(filt) is None:
                raise not_found(f"run {run_id}")
            await asyncio.sleep(0.1)
            continue
        try:
            payload = rs.decide_cancel(state, reason=reason)
        except rs.InvalidTransition as exc:
            if state.status == rs.RUNNING or quiet:  # already asked: idempotent while it takes effect
                return {
                    "success": True,
                    "status": "canceling" if state.status == rs.RUNNING else state.status,
                }
            raise bad_request(str(exc)) from None
        try:
            lifecycle = subjects.aggregate_filter(state.project, "run", run_id, g.store.prefix, rs.LIFECYCLE)
            await g.commit_payload(payload, state.project, run_id, state.version, lifecycle)
        except ConcurrencyConflict:
            continue  # the runner moved it meanwhile (started or ended): decide again
        if state.status == rs.PENDING and state.thread_id is not None:  # its thread is free again
            await settle(g.store, state.project, state.thread_id, run_id)
        return {"success": True, "status": "canceled" if state.status == rs.PENDING else "canceling"}
    raise conflict("the run kept changing; try again")


@post("/v1/runs/{run_id:str}/cancel", status_code=200, opt=RUN, operation_class=OptionalBody)
async def cancel_run(
    request: Request[Any, Any, Any], run_id: str, data: NoFields | None = None
) -> CancelResult:
    """Pending runs never start; running ones get SIGTERM, a grace period, then SIGKILL. No body
    is needed."""
    return CancelResult(**await request_cancel(gw(request), run_id, reason="requested"))


@get("/v1/runs/{run_id:str}/events", opt=STREAM, responses=SSE, operation_class=_RUN_EVENTS)
async def run_events(request: Request[Any, Any, Any], run_id: str) -> Any:
    """SSE of a run. ``?cancel_on_disconnect=true``: a client that goes away before the run ends
    cancels it (for callers that only care while they watch)."""
    g = gw(request)
    cancels = request.query_params.get("cancel_on_disconnect", "").lower() in ("1", "true", "yes")
    if cancels:
        require_role(request, RUN["role"])  # it cancels: what POST …/cancel needs
    after = resume_after(request)
    run = await g.run(run_id)
    filt = subjects.any_project_aggregate_filter("run", run_id, g.store.prefix)
    ended = run["status"] in rs.TERMINAL
    # Ended: everything is stored, so the stream must answer now, or 503 (confirm).
    start = await resume_from(g.store, filt, after, ended=ended, confirm=ended)
    if start is None:
        return closed_stream()  # it ended, and the client saw its last event
    on_disconnect = None
    if cancels:

        async def on_disconnect() -> None:
            await request_cancel(g, run_id, reason="client disconnected", quiet=True)

    feed = g.hub.acquire(run_id)
    if not await feed.wait_reading(g.store.read_timeout):
        g.hub.release(run_id)
        raise ApiError(503, "unavailable", "the event stream cannot be read right now; try again")
    return FeedStream(
        feed,
        start,
        is_last=lambda t: t in TERMINAL_TYPES,
        on_disconnect=on_disconnect,
        release=lambda: g.hub.release(run_id),
        closing=g.closing,
    )


@get("/v1/runs/{run_id:str}/artifacts", opt=READ, responses=answers(ArtifactList))
async def list_artifacts(request: Request[Any, Any, Any], run_id: str) -> dict[str, Any]:
    g = gw(request)
    await g.run(run_id)
    return {"artifacts": await g.rm.artifacts(run_id)}


@get("/v1/runs/{run_id:str}/artifacts/{name:path}", opt=READ, operation_class=BinaryDownload)
async def download_artifact(request: Request[Any, Any, Any], run_id: str, name: str) -> Response[Any]:
    """The file's bytes streamed from the object store; ``ETag`` is its sha256, ``Range``
    (one range) answers 206, ``If-None-Match`` 304."""
    g = gw(request)
    art = await g.rm.artifact(run_id, name.lstrip("/"))
    if art is None:
        # The read model may be behind the run (another gateway, a failover): once it holds the
        # whole run, a missing artifact really is missing.
        await g.run(run_id)
        art = await g.rm.artifact(run_id, name.lstrip("/"))
    if art is None:
        raise not_found(f"artifact {name.lstrip('/')} of run {run_id}")
    size, etag = int(art["size"]), f'"{art["sha256"]}"'
    headers = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Content-Disposition": content_disposition(art["name"].rsplit("/", 1)[-1]),
        "X-Content-SHA256": art["sha256"],
        # A crew chose the bytes and the type: opened in a browser, nothing in it may run here.
        "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox",
        "X-Content-Type-Options": "nosniff",
    }
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(b"", status_code=304, headers=headers)
    wanted = request.headers.get("range")
    if request.headers.get("if-range") is not None and not etag_matches(
        request.headers.get("if-range"), etag
    ):
        wanted = None  # the client's copy is another file: send this one whole
    try:
        part = byte_range(wanted, size)
    except Unsatisfiable:
        headers["Content-Range"] = f"bytes */{size}"
        return Response(b"", status_code=416, headers=headers)
    start, end = part or (0, size)
    headers["Content-Length"] = str(end - start)
    status = 200
    if part is not None:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    chunks = g.objects.stream(artifact_object(art["sha256"]), start, end)
    # The first chunk is read before answering: a missing object is an error status, not a
    # 200 that stops short.
    first = await anext(chunks, b"")

    async def body() -> AsyncIterator[bytes]:
        yield first
        async for chunk in chunks:
            yield chunk

    return Stream(body(), media_type=served_type(art["content_type"]), headers=headers, status_code=status)


#: The types a download is sent with as they were stored: what a browser only shows or hands to
#: a viewer (raster images, which the console previews; text; data), never runs or applies.
PASSIVE_TYPES = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/avif",
        "image/bmp",
        "text/plain",
        "text/markdown",
        "text/csv",
        "application/json",
        "application/pdf",
    }
)
OPAQUE = "application/octet-stream"


def served_type(stored: str) -> str:
    """The ``Content-Type`` a crew's file is downloaded with: its stored type when passive, else
    ``application/octet-stream``. The file is served from the console's origin, and ``attachment``
    and the sandbox policy do not apply when a page loads it as a subresource: with ``nosniff``,
    an opaque type is what makes a browser refuse ``evil.js`` as a script and ``evil.css`` as a
    stylesheet (and an HTML or SVG file is never a document of this origin)."""
    media = stored.split(";", 1)[0].strip().lower()
    return media if media in PASSIVE_TYPES else OPAQUE


_ATTR_CHARS = "!#$&+-.^_`|~"  # RFC 5987 attr-char besides letters and digits


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII fallback name and the exact name RFC 6266 / 5987 encoded:
    whatever a crew called its file, it cannot break out of the header or the quotes."""
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\%' else "_" for c in filename) or "artifact"
    exact = quote(filename, safe=_ATTR_CHARS)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{exact}"


ROUTES = [create_run, get_run, list_runs, cancel_run, run_events, list_artifacts, download_artifact]
