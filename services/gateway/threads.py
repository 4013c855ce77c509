"""Threads: create, list, read, run in (one run at a time), history, copy, delete, follow (SSE).

Starting a run decides on the thread's state read from the stream (its latest event of each
type: one read), not the read model, and appends ``thread.run_accepted`` with the thread's
expected sequence: of twenty simultaneous starts one is accepted, the others read the thread
again and answer 409 with the running run's id. Then the run's ``run.queued`` (see
:mod:`crewyard.threads` for what settles a crash in between).
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, delete, get, post
from litestar.types import ASGIApp

from crewyard.contract.threads import (
    Thread,
    ThreadCopy,
    ThreadCreate,
    ThreadDeleted,
    ThreadHistory,
    ThreadList,
    ThreadRunCreate,
    ThreadRunStarted,
)
from crewyard.core import run_state as rs
from crewyard.core import subjects
from crewyard.core import threads as core
from crewyard.core.bounds import OutOfBounds, check_json
from crewyard.core.events import InvalidEvent, ThreadCreated, ThreadRunAccepted, make_event
from crewyard.core.ids import is_id, new_id
from crewyard.core.versions import check_environment, choose_name
from crewyard.eventstore import ConcurrencyConflict, RawEvent, StoreUnavailable
from crewyard.threads import (
    StoredCheckpoint,
    accept_run,
    checkpoint_content,
    latest_checkpoint,
    load_thread,
    queue_run,
    settle,
    stored_checkpoint,
)

from .access import allow, visible_project
from .context import Gateway, gw, project_name
from .errors import ApiError, bad_request, conflict, not_found
from .openapi import RESUMING, JsonBytes, OptionalBody, answers, documented
from .sse import SSE, STREAM, resume_after, stream_events

READ, RUN = {"role": "read"}, {"role": "run"}
log = logging.getLogger("crewyard.gateway")
MAX_STATE = 1024 * 1024
_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder()


#: A page offset SQLite can take (a 64-bit integer), far beyond any real list.
MAX_OFFSET = 1_000_000_000


def _bounded(value: Any, what: str) -> None:
    try:
        check_json(value, what)
    except OutOfBounds as exc:
        raise bad_request(str(exc)) from None
    if len(_enc.encode(value)) > MAX_STATE:
        raise ApiError(413, "payload_too_large", f"{what} is larger than {MAX_STATE} bytes")


#: What one page of a thread's history reads of states kept in the object store (each up to
#: 32 MiB): a page of 100 of them was gigabytes in the gateway's memory.
PAGE_STORED_BYTES = 32 << 20


#: What a view shows of a stored checkpoint that is not what a runner writes: no state.
_UNREADABLE = StoredCheckpoint(msgspec.Raw(b"null"), msgspec.Raw(b"null"), msgspec.Raw(b"[]"))


async def _thread(g: Gateway, row: dict[str, Any], *, stored: bool = True) -> dict[str, Any]:
    """A thread's view (the contract's ``Thread``, its stored JSON raw); ``stored``: with a large
    state, read from the object store (a listing leaves those out: a page of 100 threads with
    states of megabytes each would be gigabytes)."""
    ref = row.pop("state_ref")
    if ref:  # a large state lives in the object store
        row["values"] = (await stored_checkpoint(g.objects, ref, _UNREADABLE))[0].values if stored else None
    return row


async def thread_view(g: Gateway, thread_id: str) -> dict[str, Any]:
    """A thread's view with its state (read from the object store when it is kept there)."""
    return await _thread(g, await g.thread(thread_id))


def answer(view: Any, status: int = 200) -> JsonBytes:
    return JsonBytes(_enc.encode(view), status)


async def _create(g: Gateway, created: ThreadCreated, project: str) -> dict[str, Any]:
    """Store a new thread and answer with it: as the read model has it, or, when this gateway's
    read model is behind, as the event stored it (never a 404 that a client would retry into a
    second thread)."""
    event = make_event(created, project=project, aggregate_id=new_id("thr"), event_id=new_id("evt"))
    await g.commit(event, 0)
    row = await g.rm.thread(event.aggregate_id)
    if row is not None:
        return await _thread(g, row)
    at, d = event.time.isoformat(), created
    if d.checkpoint_id is not None:  # a copy: its state is the checkpoint's (as the projector has it)
        values, ref = (None, d.ref.sha256) if d.ref is not None else (d.values or {}, None)
    else:
        values, ref = d.values, None
    raw_values = msgspec.Raw(_enc.encode(values)) if values is not None else None
    row = {
        "thread_id": event.aggregate_id,
        "id": event.aggregate_id,
        "project": project,
        "name": d.name,
        "deployment_id": d.deployment_id,
        "status": "interrupted" if d.interrupted else "idle",
        "active_run_id": None,
        "metadata": msgspec.Raw(_enc.encode(d.metadata)),
        "values": raw_values,
        "state_ref": ref,
        "checkpoint_id": d.checkpoint_id,
        "copied_from": d.copied_from,
        "created_at": at,
        "updated_at": at,
    }
    return await _thread(g, row)


async def _state(g: Gateway, thread_id: str) -> core.ThreadState:
    if not is_id(thread_id, "thr"):
        raise not_found(f"thread {thread_id}")
    state, _ = await load_thread(g.store, thread_id)
    core.check_exists(state)
    return state


@post("/v1/threads", status_code=201, opt=RUN, responses=answers(Thread, 201))
async def create_thread(request: Request[Any, Any, Any], data: ThreadCreate) -> ASGIApp:
    """A thread of a deployment name: ``deployment_id``'s, or ``project``'s (``name`` or its
    default one); ``values`` is its initial state."""
    g = gw(request)
    if data.values is not None:
        _bounded(data.values, "values")
    _bounded(data.metadata, "metadata")
    if data.deployment_id is not None:
        if data.project is not None or data.name is not None:
            raise bad_request("give either deployment_id or project (and name), not both")
        dep = await g.deployment(data.deployment_id)
        allow(request, dep["project"], not_found(f"deployment {dep['deployment_id']}"))
        project, name, dep_id = dep["project"], dep["name"], dep["deployment_id"]
    elif data.project is not None:
        allow(request, project_name(data.project))
        project = (await g.project(project_name(data.project)))["name"]
        name, dep_id = choose_name(project, await g.rm.deployment_names(project), data.name), None
    else:
        raise bad_request("deployment_id or project is required")
    created = ThreadCreated(name=name, deployment_id=dep_id, metadata=data.metadata, values=data.values)
    return answer(await _create(g, created, project), 201)


@get("/v1/threads", opt=READ, responses=answers(ThreadList))
async def list_threads(
    request: Request[Any, Any, Any],
    project: str | None = None,
    deployment_id: str | None = None,
    name: str | None = None,
    status: str | None = None,
    limit: int = 20,
    offset: int = 0,
) -> ASGIApp:
    """Newest first; ``deployment_id`` lists the threads of that version's deployment name. A page
    ends early once 16 MiB of the threads' metadata and states are in it (at least one thread):
    ``next_offset`` is where the next page starts (null after the last)."""
    g = gw(request)
    if not 1 <= limit <= 100 or not 0 <= offset <= MAX_OFFSET:
        raise bad_request(f"limit must be between 1 and 100, offset between 0 and {MAX_OFFSET}")
    if status is not None and status not in core.STATUSES:
        raise bad_request(f"unknown status {status!r}: use {', '.join(core.STATUSES)}")
    if deployment_id is not None:
        dep = await g.deployment(deployment_id)
        allow(request, dep["project"], not_found(f"deployment {dep['deployment_id']}"))
        project, name = dep["project"], dep["name"]
    if project is not None:
        project = project_name(project)
    shown, project = visible_project(request, project)  # a project key sees its project's only
    if not shown:
        return answer({"threads": [], "next_offset": None})
    rows, more = await g.rm.threads(project=project, name=name, status=status, limit=limit, offset=offset)
    threads = [await _thread(g, row, stored=False) for row in rows]
    return answer({"threads": threads, "next_offset": offset + len(threads) if more else None})


@get("/v1/threads/{thread_id:str}", opt=READ, responses=answers(Thread))
async def get_thread(request: Request[Any, Any, Any], thread_id: str) -> ASGIApp:
    return answer(await thread_view(gw(request), thread_id))


@post("/v1/threads/{thread_id:str}/runs", status_code=202, opt=RUN)
async def create_thread_run(
    request: Request[Any, Any, Any], thread_id: str, data: ThreadRunCreate
) -> ThreadRunStarted:
    """Run the thread's deployment (``environment``'s version) on the thread's state; 409 while
    it runs another run (the error says which)."""
    g = gw(request)
    _bounded(data.input, "input")
    if data.command is not None:
        _bounded(data.command, "command")
    environment = check_environment(data.environment)
    for _ in range(5):
        state = await _state(g, thread_id)
        if state.status == core.BUSY and state.active_run_id is not None:
            await _settled_or_busy(g, state)
            continue
        target = await g.resolve_version(project=state.project, name=state.name, environment=environment)
        run_id = new_id("run")
        try:
            await accept_run(g.store, state, run_id)
        except ConcurrencyConflict:
            continue  # someone else changed the thread: look again (busy now, most likely)
        try:
            seq = await queue_run(g.store, state, run_id, target, input=data.input, command=data.command)
        except (StoreUnavailable, ConcurrencyConflict, InvalidEvent) as exc:
            # Certainly not stored: refused, or no stream had it (anything else may have landed).
            if not (isinstance(exc, StoreUnavailable) and exc.maybe_stored):
                await _give_back(g, state, run_id)
            raise
        await g.rm.wait_for(seq)
        return ThreadRunStarted(
            run_id=run_id,
            thread_id=thread_id,
            version_id=target.version_id,
            version_number=target.number,
            environment=target.environment,
            events_url=f"/v1/runs/{run_id}/events",
        )
    raise conflict(f"thread {thread_id} kept changing; try again")


async def _give_back(g: Gateway, state: core.ThreadState, run_id: str) -> None:
    """The thread was made busy with ``run_id`` but the run was certainly not queued (the store
    refused it, or no stream had it): the thread goes back to what it was now, so that the
    caller's retry is not a 409 until the thread keeper gives up on the run. A run that may be
    queued all the same (a write whose answer never came, which may land later) is the keeper's
    to judge, after its looks; so is this one if the store cannot take this write either."""
    try:
        await settle(g.store, state.project, state.thread_id, run_id, gave_up=True)
    except Exception as exc:
        log.warning(
            "thread %s: run %s not queued, left to the thread keeper (%s)", state.thread_id, run_id, exc
        )


async def _settled_or_busy(g: Gateway, state: core.ThreadState) -> None:
    """A thread busy with a run that already ended is settled here and now; a live run is a 409."""
    run_id = state.active_run_id or ""
    run = rs.fold(run_id, await g.store.load(state.project, "run", run_id, types=rs.LIFECYCLE))
    if run.is_terminal and await settle(g.store, state.project, state.thread_id, run_id):
        return
    raise core.ThreadBusy(f"thread {state.thread_id} is busy with run {run_id}", run_id)


@get("/v1/threads/{thread_id:str}/history", opt=READ, responses=answers(ThreadHistory))
async def thread_history(
    request: Request[Any, Any, Any], thread_id: str, limit: int = 20, offset: int = 0, full: bool = False
) -> ASGIApp:
    """Checkpoints, newest first (one per run); ``?full=true`` adds the framework's own checkpoint.
    A page may hold fewer than ``limit`` (its states are read up to some 16 MiB inline and 32 MiB
    kept in the object store): the next starts at ``offset`` plus the page's length."""
    g = gw(request)
    await g.thread_owner(thread_id)
    if not 1 <= limit <= 100 or not 0 <= offset <= MAX_OFFSET:
        raise bad_request(f"limit must be between 1 and 100, offset between 0 and {MAX_OFFSET}")
    return answer(await checkpoints(g, thread_id, limit=limit, offset=offset, full=full))


async def checkpoints(
    g: Gateway, thread_id: str, *, limit: int, offset: int, full: bool = False
) -> dict[str, Any]:
    """A thread's checkpoints, newest first (the contract's ``ThreadHistory``, stored JSON raw),
    with the states kept in the object store read back until ``PAGE_STORED_BYTES`` of them were
    read (the last may pass it; at least one checkpoint), so a page may hold fewer than
    ``limit``; the next starts at ``offset + len(history)``."""
    rows, total, _ = await g.rm.history(thread_id, limit=limit, offset=offset, full=full)
    shown: list[dict[str, Any]] = []
    read = 0
    for row in rows:
        ref = row.pop("state_ref")
        if ref:
            if shown and read >= PAGE_STORED_BYTES:
                break
            stored, size = await stored_checkpoint(g.objects, ref, _UNREADABLE)
            read += size
            row["values"] = stored.values
            # The stored checkpoint holds them all (the event may only have counted them).
            row["interrupts"] = stored.interrupts
            if full:
                row["checkpoint"] = stored.checkpoint
        shown.append(row)
    return {"history": shown, "total": total, "limit": limit, "offset": offset}


@post(
    "/v1/threads/{thread_id:str}/copy",
    status_code=201,
    opt=RUN,
    operation_class=OptionalBody,
    responses=answers(Thread, 201),
)
async def copy_thread(
    request: Request[Any, Any, Any], thread_id: str, data: ThreadCopy | None = None
) -> ASGIApp:
    """A new thread that starts at this one's latest checkpoint (the full checkpoint: a LangGraph
    graph continues from it, interrupts included); the two diverge from there."""
    g = gw(request)
    state = await _state(g, thread_id)
    _, records = await load_thread(g.store, thread_id, state.project)
    source = await latest_checkpoint(g.store, state, records)
    if data is not None and data.metadata is not None:
        _bounded(data.metadata, "metadata")
    metadata = data.metadata if data is not None and data.metadata is not None else state.metadata
    created = ThreadCreated(
        name=state.name, deployment_id=state.deployment_id, metadata=metadata, copied_from=thread_id
    )
    if source is not None:  # the checkpoint, whole: a stored one is shared by reference
        if source.ref is not None:
            values, checkpoint, interrupts = None, None, list(source.interrupts)
        else:
            values, checkpoint, interrupts = await checkpoint_content(g.objects, source)
        created = msgspec.structs.replace(
            created,
            checkpoint_id=new_id("ckp"),
            values=values,
            checkpoint=checkpoint,
            interrupts=interrupts,
            interrupt_count=source.interrupt_count,
            ref=source.ref,
        )
    else:  # the thread's initial values (inline: only a checkpoint's state is ever stored)
        values = (await thread_view(g, thread_id))["values"]
        created = msgspec.structs.replace(created, values=_dec.decode(values) if values is not None else None)
    return answer(await _create(g, created, state.project), 201)


@delete("/v1/threads/{thread_id:str}", status_code=200, opt=RUN)
async def delete_thread(request: Request[Any, Any, Any], thread_id: str) -> ThreadDeleted:
    """Delete a thread (409 while it runs a run)."""
    g = gw(request)
    for _ in range(5):
        state = await _state(g, thread_id)
        if state.status == core.BUSY:
            await _settled_or_busy(g, state)
            continue
        try:
            await g.commit_payload(core.decide_delete(state), state.project, thread_id, state.version)
        except ConcurrencyConflict:
            continue
        return ThreadDeleted(thread_id=thread_id)
    raise conflict(f"thread {thread_id} kept changing; try again")


@get("/v1/threads/{thread_id:str}/events", opt=STREAM, responses=SSE, operation_class=documented(*RESUMING))
async def thread_events(request: Request[Any, Any, Any], thread_id: str) -> Any:
    """SSE of the thread and every run in it, across runs: history from ``Last-Event-ID`` /
    ``?after=``, else from the start of its current run (or from now when it is idle); it does
    not end between runs."""
    g = gw(request)
    state = await _state(g, thread_id)
    after = resume_after(request)
    runs = set(await g.rm.thread_runs(thread_id))
    if state.active_run_id:
        runs.add(state.active_run_id)
    if after is not None:
        start = after + 1
    elif state.status == core.BUSY:
        _, records = await load_thread(g.store, thread_id, state.project)
        start = next((r.seq for r in records if isinstance(r.event.data, ThreadRunAccepted)), state.version)
    else:
        start = await g.store.last_seq() + 1
    prefix = g.store.prefix

    def keep(raw: RawEvent) -> bool:
        try:
            _, aggregate, aggregate_id, event_type = subjects.parse_subject(raw.subject, prefix)
        except ValueError:
            return False
        if aggregate == "run":
            return aggregate_id in runs
        if aggregate != "thread" or aggregate_id != thread_id:
            return False
        if event_type == ThreadRunAccepted.TYPE:  # a run starts: follow its events too
            try:
                data = _dec.decode(raw.data).get("data") or {}
            except (msgspec.DecodeError, AttributeError):
                data = {}  # an undecodable event: render() sets it aside, the stream goes on
            if isinstance(data, dict) and isinstance(data.get("run_id"), str):
                runs.add(data["run_id"])
        return True

    filt = f"{prefix}.{state.project}.>"
    return await stream_events(
        g.store,
        filt,
        start,
        ping_s=g.settings.sse_ping_s,
        is_last=lambda t: t == "thread.deleted",
        stream="threads",
        closing=g.closing,
        keep=keep,
    )


ROUTES = [
    create_thread,
    list_threads,
    get_thread,
    create_thread_run,
    thread_history,
    copy_thread,
    delete_thread,
    thread_events,
]
