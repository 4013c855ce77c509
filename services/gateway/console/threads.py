"""Threads: conversations whose state outlives their runs — the list, and one thread with its
state (its messages, when it has them) and its checkpoints, one per run, live: its stream sends
the thread's parts again whenever one of its events arrives (from the read model's position
when the page was rendered, so nothing in between is lost)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, urlencode

import msgspec
from litestar import Request, Response, get

from crewyard.contract.threads import Checkpoint, Thread, ThreadHistory
from crewyard.core import subjects
from crewyard.core import threads as core
from crewyard.core.events import ThreadDeleted

from ..context import Gateway, gw, project_name
from ..errors import bad_request, not_found
from ..sse import Batches, followed, resume_after, sse_response
from ..threads import MAX_OFFSET, checkpoints, thread_view
from .live import END, message
from .render import fragment, page, size
from .viewer import Viewer, viewer

READ = {"role": "read", "page": True}
LIVE = {"role": "read", "stream": True}  # holds one of its key's stream places
PAGE_SIZE = 25


@get("/threads", opt=READ, include_in_schema=False)
async def threads_page(request: Request[Any, Any, Any]) -> Response[str]:
    g, who = gw(request), viewer(request)
    q = request.query_params
    project = project_name(q["project"]) if q.get("project") else who.project
    status = q.get("status") or None
    if status is not None and status not in core.STATUSES:
        raise bad_request(f"unknown status {status[:40]!r}")
    try:
        offset = max(int(q.get("offset") or 0), 0)
    except ValueError:
        raise bad_request("offset must be a number") from None
    if offset > MAX_OFFSET:  # SQLite takes 64 bits: past them a 500 before
        raise bad_request(f"offset must be at most {MAX_OFFSET}")
    threads: list[dict[str, Any]] = []
    more = False
    if project is None or who.sees(project):
        threads, more = await g.rm.threads(
            project=project, name=None, status=status, limit=PAGE_SIZE, offset=offset, lean=True
        )
    query = {k: v for k, v in (("project", q.get("project")), ("status", status)) if v}
    return page(
        request,
        "threads.html",
        threads=threads,
        statuses=core.STATUSES,
        filters={"project": project or "", "status": status or ""},
        projects=[p["name"] for p in await g.rm.projects() if who.sees(p["name"])],
        next_url="/threads?" + urlencode({**query, "offset": offset + PAGE_SIZE}) if more else None,
        first_url="/threads?" + urlencode(query) if offset else None,
        nav="threads",
    )


async def _parts(g: Gateway, who: Viewer, thread_id: str) -> dict[str, Any]:
    """What a thread's page shows: the thread, its messages (when its state has them), its
    checkpoints."""
    if not who.sees((await g.thread_owner(thread_id))["project"]):
        raise not_found(f"thread {thread_id}")
    thread = Thread(**{k: _shown(v) for k, v in (await thread_view(g, thread_id)).items()})
    history = await checkpoints(g, thread_id, limit=50, offset=0)
    history["history"] = [Checkpoint(**{k: _shown(v) for k, v in c.items()}) for c in history["history"]]
    values = thread.values if isinstance(thread.values, dict) else {}
    messages = values.get("messages") if isinstance(values.get("messages"), list) else None
    return {
        "thread": thread,
        "messages": [_message(m) for m in messages] if messages is not None else None,
        "history": ThreadHistory(**history),
    }


#: Stored JSON a page shows decoded and indented; of larger JSON it shows this much of the text
#: (a state of many megabytes, indented, was a page of many more).
SHOWN_JSON = 64 * 1024


def _shown(value: Any) -> Any:
    if not isinstance(value, msgspec.Raw):
        return value
    if len(value) <= SHOWN_JSON:
        return _dec.decode(value)
    text = bytes(memoryview(value)[:SHOWN_JSON]).decode(errors="replace")
    return f"{text}\n\u2026 (the first {size(SHOWN_JSON)} of {size(len(value))}: the API shows it whole)"


@get("/threads/{thread_id:str}", opt=READ, include_in_schema=False)
async def thread_page(request: Request[Any, Any, Any], thread_id: str) -> Response[str]:
    g, who = gw(request), viewer(request)
    position = await g.rm.position()  # the live stream starts after what the page shows
    shown = await _parts(g, who, thread_id)
    live = f"/live/threads/{quote(thread_id)}?after={position}"
    return page(request, "thread.html", live=live, nav="threads", **shown)


@get("/live/threads/{thread_id:str}", opt=LIVE, include_in_schema=False)
async def thread_live(request: Request[Any, Any, Any], thread_id: str) -> Any:
    """The thread's header, conversation and checkpoints again whenever the thread changes (a
    run accepted, a checkpoint, a run ended); ends when the thread is deleted."""
    g, who = gw(request), viewer(request)
    thread = (await _parts(g, who, thread_id))["thread"]
    after = resume_after(request) or 0
    filt = subjects.aggregate_filter(thread.project, "thread", thread.thread_id, g.store.prefix)
    batches = followed(g.store, filt, after + 1, g.settings.sse_ping_s)
    await anext(batches)  # the consumer exists: a stream that cannot be read is a 503 now
    return sse_response(
        _changes(g, who, thread.thread_id, batches),
        is_last=lambda t: t == ThreadDeleted.TYPE,
        stream="console",
        closing=g.closing,
    )


async def _changes(g: Gateway, who: Viewer, thread_id: str, batches: Batches) -> Batches:
    """One message per batch of the thread's events: its parts as the read model has them then."""
    async for batch in batches:
        if not batch:
            yield batch
            continue
        last_seq = batch[-1][0]
        types = [t for _, t, _ in batch]
        if ThreadDeleted.TYPE in types:
            yield [(last_seq, ThreadDeleted.TYPE, END)]
            return
        await g.rm.wait_for(last_seq, timeout=5.0)
        html = fragment("_thread_parts.html", parts_only=True, **await _parts(g, who, thread_id))
        yield [(last_seq, types[-1], message(last_seq, html))]


def _message(value: Any) -> dict[str, Any]:
    """One message of a conversation as LangGraph, OpenAI-style or plain crews keep them."""
    if not isinstance(value, dict):
        return {"role": "", "content": value}
    role = str(value.get("role") or value.get("type") or "")
    # The role is shown as it is, but styles only by a class of letters, digits, - and _: "user
    # sr-only" would borrow the page's own classes (and hide the message from its reader).
    return {"role": role, "kind": _CLASS.sub("-", role.lower())[:40], "content": value.get("content", value)}


_CLASS = re.compile(r"[^a-z0-9_-]")
_dec = msgspec.json.Decoder()


ROUTES = [threads_page, thread_page, thread_live]
