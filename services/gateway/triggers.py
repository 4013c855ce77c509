"""Incoming triggers: a secret URL per trigger whose JSON POSTs start runs.

``POST /webhooks/runs/{token}`` needs no API key: the token authenticates that one action and no
other (route ``opt={"open": True}``). A wrong or revoked token answers 404, like any unknown
path. Each trigger is rate limited per gateway (a token bucket, ``CREWYARD_TRIGGER_RATE``).
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime
from typing import Any, NamedTuple, cast

import msgspec
from litestar import Request, delete, get, post
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from litestar.response import Response

from crewyard.contract.triggers import Trigger, TriggerCreate, TriggerFired, TriggerInput, TriggerList
from crewyard.core import run_state as rs
from crewyard.core import subjects
from crewyard.core.events import (
    TERMINAL_TYPES,
    RunCanceled,
    RunCompleted,
    RunFailed,
    RunQueued,
    RunStarted,
    TriggerCreated,
    TriggerRevoked,
)
from crewyard.core.ids import is_id, new_id, version_id
from crewyard.core.signing import looks_like_github_signature, verify_github
from crewyard.core.triggers import (
    InvalidTemplate,
    apply_template,
    check_template,
    looks_like_token,
    new_token,
    token_hash,
)
from crewyard.core.versions import Resolved, check_environment
from crewyard.eventstore import StoreUnavailable
from crewyard.launch import queue_run

from .access import _count_failure
from .context import Gateway, IdempotencyKey, gw, project_name
from .errors import ApiError, bad_request, check_input_size, not_found
from .idempotency import first_event, same_request
from .limits import Buckets, TooMany
from .openapi import OptionalBody

DEPLOY, READ, OPEN = {"role": "deploy"}, {"role": "read"}, {"open": True}
_json = msgspec.json.Decoder()
_sorted = msgspec.json.Encoder(order="sorted")
#: The events after which a run is no longer waiting for a runner.
_MOVED = frozenset({RunStarted.TYPE, *TERMINAL_TYPES})
_ENDED = {RunCompleted.TYPE: rs.SUCCEEDED, RunFailed.TYPE: rs.FAILED, RunCanceled.TYPE: rs.CANCELED}


def secret_name(trigger_id: str) -> str:
    return f"trigger:{trigger_id}"


def trigger_view(row: dict[str, Any], **shown: Any) -> Trigger:
    return Trigger(
        id=row["id"],
        project=row["project"],
        name=row["name"],
        deployment_id=row["deployment_id"],
        environment=row["environment"],
        template=None if row["template"] is None else _json.decode(row["template"]),
        signature_header=row["signature_header"],
        created_at=row["created_at"],
        revoked=bool(row["revoked"]),
        **shown,
    )


@post("/v1/projects/{project:str}/triggers", status_code=201, opt=DEPLOY)
async def create_trigger(request: Request[Any, Any, Any], project: str, data: TriggerCreate) -> Trigger:
    """Create a trigger; the answer holds its URL (and a generated signature secret), shown once."""
    g = gw(request)
    project = project_name(project)
    await g.project(project)
    check_environment(data.environment)
    if data.deployment is not None:
        dep = await g.deployment(data.deployment)
        if dep["project"] != project:
            raise not_found(f"deployment {data.deployment}")
    template = None
    if data.template is not None:
        try:
            template = check_template(data.template)
        except InvalidTemplate as exc:
            raise bad_request(str(exc), "invalid_template") from None
    trigger_id, token = new_id("trg"), new_token()
    header = sealed = shown_secret = None
    if data.signature is not None:
        header = data.signature.header
        shown_secret = None if data.signature.secret else new_token()
        sealed = g.secrets.encrypt(
            project, secret_name(trigger_id), data.signature.secret or shown_secret or ""
        )
    payload = TriggerCreated(
        name=data.name,
        token_sha256=token_hash(token),
        deployment_id=data.deployment,
        environment=data.environment,
        template=template,
        signature_header=header,
        signature_secret=sealed,
    )
    await g.create_counted(payload, project, trigger_id, g.settings.max_triggers)
    # Answered from what was stored when this gateway's read model is behind: the token and a
    # generated secret are shown only in this answer (a 503 lost them).
    row = await g.rm.trigger(trigger_id) or await _stored_row(g, project, trigger_id, payload)
    return trigger_view(row, url=f"/webhooks/runs/{token}", token=token, signature_secret=shown_secret)


async def _stored_row(g: Gateway, project: str, trigger_id: str, payload: TriggerCreated) -> dict[str, Any]:
    """The read model's row of a trigger just created, from what was stored."""
    try:
        stored = await g.store.load(project, "trigger", trigger_id, types=TriggerCreated.TYPE)
    except StoreUnavailable:  # the creation is done: a 503 now would have a client make another
        stored = []
    # Not found on a replica that is behind (or not read): it was stored, so its time is about now.
    at = stored[0].event.time if stored else datetime.now(UTC)
    template = None if payload.template is None else msgspec.json.encode(payload.template)
    return {
        **msgspec.structs.asdict(payload),
        "id": trigger_id,
        "project": project,
        "template": template,
        "created_at": at.isoformat(),
        "revoked": 0,
    }


@get("/v1/projects/{project:str}/triggers", opt=READ)
async def list_triggers(request: Request[Any, Any, Any], project: str) -> TriggerList:
    g = gw(request)
    project = project_name(project)
    await g.project(project)
    return TriggerList(triggers=[trigger_view(r) for r in await g.rm.triggers(project)])


@delete("/v1/projects/{project:str}/triggers/{trigger_id:str}", status_code=200, opt=DEPLOY)
async def revoke_trigger(request: Request[Any, Any, Any], project: str, trigger_id: str) -> Trigger:
    """Revoke a trigger: its URL answers 404 from now on."""
    g = gw(request)
    project = project_name(project)
    history = await g.store.load(project, "trigger", trigger_id) if is_id(trigger_id, "trg") else []
    if not history:
        raise not_found(f"trigger {trigger_id}")
    if not any(isinstance(r.event.data, TriggerRevoked) for r in history):
        await g.commit_payload(TriggerRevoked(), project, trigger_id, history[-1].seq)
    else:  # revoked already (a request sent twice): answered as the read model has it
        await g.rm.wait_for(history[-1].seq)
    row = await g.rm.trigger(trigger_id)
    if row is None:  # the read model is far behind the stream (a projector recovering)
        raise ApiError(503, "unavailable", "the read model is behind the event stream; try again")
    return trigger_view(row)


def _buckets(request: Request[Any, Any, Any], g: Gateway) -> Buckets:
    buckets = getattr(request.app.state, "trigger_buckets", None)
    if buckets is None:
        buckets = Buckets(g.settings.trigger_rate)
        request.app.state.trigger_buckets = buckets
    return buckets


async def _trigger(request: Request[Any, Any, Any], g: Gateway, token: str) -> dict[str, Any]:
    if not looks_like_token(token):
        raise not_found("page")
    digest = token_hash(token)
    row = await g.rm.trigger_by_token_hash(digest)
    if row is None:  # perhaps created through another gateway a moment ago
        # A miss costs a stream request and a wait for the read model: it counts as a failed
        # authentication of the address (429 once its bucket is empty), as a wrong API key does.
        _count_failure(request, g, "trigger URL")
        await g.fresh()
        row = await g.rm.trigger_by_token_hash(digest)
    if row is None:
        raise not_found("page")
    return row


async def token_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """What the token authenticates, before the body is read as JSON: an unknown or revoked
    token is a 404 whatever the body, then its signature over the body's exact bytes (401), then
    the trigger's rate limit (429). The signature comes first so that requests without the secret
    (anyone who saw the URL) cannot use up the sender's limit; a signature of the wrong shape is
    refused before the secret is decrypted or the body read. A wrong one costs a decrypt and an
    HMAC over a body of at most 2 MiB (the app's ``request_max_body_size``): a limit of their
    own would be a way to keep the sender's signed requests out too."""
    request = cast("Request[Any, Any, Any]", connection)
    g = gw(request)
    row = await _trigger(request, g, request.path_params["token"])
    if row["signature_header"]:
        given = request.headers.get(row["signature_header"])
        refused = ApiError(401, "bad_signature", f"missing or wrong {row['signature_header']} signature")
        if not looks_like_github_signature(given):
            raise refused
        secret = g.secrets.decrypt(row["project"], secret_name(row["id"]), row["signature_secret"])
        if not verify_github(secret, given, await request.body()):
            raise refused
    wait = _buckets(request, g).take(row["id"])
    if wait:
        raise TooMany(wait, "too many requests to this trigger; slow down")
    request.state.trigger = row


@post(
    "/webhooks/runs/{token:str}",
    status_code=202,
    opt=OPEN,
    guards=[token_guard],
    operation_class=OptionalBody,
)
async def fire_trigger(
    request: Request[Any, Any, Any],
    token: str,
    data: TriggerInput | None = None,
    idempotency_key: IdempotencyKey = None,
) -> Response[TriggerFired]:
    """Start a run with the JSON body as its input (or what the trigger's template makes of it);
    answers once it has started, or after a short wait with ``status: pending``."""
    g = gw(request)
    row: dict[str, Any] = request.state.trigger
    template = None if row["template"] is None else _json.decode(row["template"])
    run_input = apply_template(template, data or {})
    check_input_size(run_input)
    # Scoped to the trigger: a tab, which no header value holds, keeps it apart from API keys.
    scoped = f"{row['id']}\t{idempotency_key}" if idempotency_key else None
    request_hash = hashlib.sha256(_sorted.encode(run_input)).hexdigest() if scoped else None
    existing = await g.rm.run_by_idempotency_key(row["project"], scoped) if scoped else None
    if existing is not None:  # a repeat: the run its first made, whatever runs now
        same_request(existing["request_hash"], request_hash)
        queued = _Queued(str(existing["id"]), None, existing["deployment_id"], existing["version_number"])
    else:
        queued = await _queue(g, row, await _deployment(g, row), run_input, scoped, request_hash)
    started = _started(g, row["project"], queued.run_id, queued.seq, g.settings.trigger_wait_s)
    if queued.seq is None:
        status = await started
    else:  # meanwhile, read-your-writes on this gateway as POST /v1/runs (a lag is no error)
        status, _ = await asyncio.gather(started, g.rm.wait_for(queued.seq))
    fired = TriggerFired(
        run_id=queued.run_id,
        status=status,
        deployment_id=queued.deployment_id,
        version_id=version_id(queued.deployment_id),
        version_number=queued.version_number or 0,
        events_url=f"/v1/runs/{queued.run_id}/events",
    )
    return Response(fired, status_code=202)


class _Queued(NamedTuple):
    """The run a request started (or its first did): ``seq`` of its ``run.queued`` (None: not
    known, the run is from an earlier request), and the version it runs."""

    run_id: str
    seq: int | None
    deployment_id: str
    version_number: int | None


async def _queue(
    g: Gateway,
    row: dict[str, Any],
    target: Resolved,
    run_input: dict[str, Any],
    scoped: str | None,
    request_hash: str | None,
) -> _Queued:
    """Queue the run a request starts. With an ``Idempotency-Key`` (``scoped`` to the trigger),
    a concurrent repeat that won is the run (422 when its input is another), as
    ``POST /v1/runs`` does; an earlier one was looked up before."""
    project = row["project"]
    run_id = new_id("run")
    appended = await queue_run(
        g.store, project=project, run_id=run_id, deployment_id=target.deployment_id,
        input=run_input, correlation_id=row["id"], environment=target.environment,
        version_number=target.number, idempotency_key=scoped, request_hash=request_hash,
    )  # fmt: skip
    if appended is None:  # a run with a new id cannot exist already
        raise ApiError(409, "conflict", "the run could not be queued; try again")
    if not appended.duplicate:
        return _Queued(run_id, appended.seq, target.deployment_id, target.number)
    # A concurrent repeat won: its event (from the leader, which has every acknowledged one).
    original = await first_event(g, appended.seq, RunQueued, request_hash)
    first = original.data
    assert isinstance(first, RunQueued)  # first_event checked it
    return _Queued(original.aggregate_id, appended.seq, first.deployment_id, first.version_number)


async def _deployment(g: Gateway, row: dict[str, Any]) -> Resolved:
    """The pinned version exactly, else what the trigger's environment runs; in its environment."""
    environment = check_environment(row["environment"])
    if row["deployment_id"]:
        pinned = await g.resolve_version(project=row["project"], deployment_id=row["deployment_id"])
        return msgspec.structs.replace(pinned, environment=environment)
    return await g.resolve_version(project=row["project"], environment=environment)


async def _started(g: Gateway, project: str, run_id: str, seq: int | None, wait_s: float) -> str:
    """Wait (at most ``wait_s``) for the run to leave ``pending``; its status then."""
    lifecycle = subjects.aggregate_filter(project, "run", run_id, g.store.prefix, rs.LIFECYCLE)
    try:
        async with asyncio.timeout(wait_s), g.store.follow(lifecycle, start_seq=seq or 1) as queue:
            while (
                moved := subjects.parse_subject((await queue.get()).subject, g.store.prefix)[3]
            ) not in _MOVED:
                pass
    except TimeoutError:
        return "pending"
    if seq is not None:  # followed from its queueing: the first move is the news
        return _ENDED.get(moved, "running")
    # A repeated request replays the lifecycle from the start, and the run may have started and
    # ended long ago: its lifecycle as it is now (a replica that is behind may not say so yet).
    state = rs.fold(run_id, await g.store.load(project, "run", run_id, types=rs.LIFECYCLE))
    return state.status if state.status not in ("", rs.PENDING) else "running"


ROUTES = [create_trigger, list_triggers, revoke_trigger, fire_trigger]
