"""Threads: conversations whose state outlives their runs — the list, and one thread with its
state (its messages, when it has them) and its checkpoints, one per run."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from litestar import Request, Response, get

from crewyard.core import threads as core

from ..context import gw, project_name
from ..errors import bad_request, not_found
from ..threads import checkpoints, thread_rows, thread_view
from .render import page
from .viewer import viewer

READ = {"role": "read", "page": True}
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
    threads = []
    if project is None or who.sees(project):
        threads = await thread_rows(g, project=project, status=status, limit=PAGE_SIZE + 1, offset=offset)
    query = {k: v for k, v in (("project", q.get("project")), ("status", status)) if v}
    more = len(threads) > PAGE_SIZE
    return page(
        request,
        "threads.html",
        threads=threads[:PAGE_SIZE],
        statuses=core.STATUSES,
        filters={"project": project or "", "status": status or ""},
        projects=[p["name"] for p in await g.rm.projects() if who.sees(p["name"])],
        next_url="/threads?" + urlencode({**query, "offset": offset + PAGE_SIZE}) if more else None,
        first_url="/threads?" + urlencode(query) if offset else None,
        nav="threads",
    )


@get("/threads/{thread_id:str}", opt=READ, include_in_schema=False)
async def thread_page(request: Request[Any, Any, Any], thread_id: str) -> Response[str]:
    g, who = gw(request), viewer(request)
    thread = await thread_view(g, thread_id)
    if not who.sees(thread.project):
        raise not_found(f"thread {thread_id}")
    history = await checkpoints(g, thread_id, limit=50, offset=0)
    values = thread.values or {}
    messages = values.get("messages") if isinstance(values.get("messages"), list) else None
    return page(
        request,
        "thread.html",
        thread=thread,
        messages=[_message(m) for m in messages] if messages is not None else None,
        history=history,
        nav="threads",
    )


def _message(value: Any) -> dict[str, Any]:
    """One message of a conversation as LangGraph, OpenAI-style or plain crews keep them."""
    if not isinstance(value, dict):
        return {"role": "", "content": value}
    role = value.get("role") or value.get("type") or ""
    return {"role": str(role), "content": value.get("content", value)}


ROUTES = [threads_page, thread_page]
