"""Every event a key may see, live: one stream for a page or a dashboard that follows everything.

A browser allows six connections per origin over HTTP/1.1, so a page follows one stream, not one
per run. A platform-wide key sees every project's events, a project key its own project's only
(the platform's own events — keys, consumers — are on another stream and never here).
``?project=`` narrows it to one project, ``?only=runs`` to run lifecycle events (queued, started,
completed, failed, canceled…: the filter is the server's, so chatty runs cost such a client
nothing). It resumes with ``Last-Event-ID`` / ``?after=``, else starts now.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.openapi.spec import OpenAPIType, Schema

from crewyard.core.events import shown_to_clients
from crewyard.core.subjects import event_type_of

from .access import visible_project
from .context import gw, project_name
from .errors import bad_request
from .openapi import RESUMING, TEXT, documented, param
from .sse import SSE, STREAM, closed_stream, resume_after, stream_events

ONLY = {"runs": "run.*.run.>"}


@get(
    "/v1/events",
    opt=STREAM,
    responses=SSE,
    operation_class=documented(
        *RESUMING,
        param("project", TEXT, "Only this project's events"),
        param("only", Schema(type=OpenAPIType.STRING, enum=list(ONLY)), "Only runs' events"),
    ),
)
async def all_events(request: Request[Any, Any, Any]) -> Any:
    g = gw(request)
    asked = request.query_params.get("project")
    project = project_name(asked) if asked else None
    shown, project = visible_project(request, project)
    if not shown:
        return closed_stream()  # another project's events: nothing, as for one that does not exist
    only = request.query_params.get("only")
    if only is not None and only not in ONLY:
        raise bad_request(f"only must be one of: {', '.join(ONLY)}")
    tail = ONLY[only] if only else ">"
    after = resume_after(request)
    start = after + 1 if after is not None else await g.store.last_seq() + 1
    return await stream_events(
        g.store,
        f"{g.store.prefix}.{project or '*'}.{tail}",
        start,
        ping_s=g.settings.sse_ping_s,
        stream="events",
        closing=g.closing,
        # Secret-bearing events (env values even encrypted, webhook and trigger secrets, webhook
        # URLs: a read key sees only their scheme and host through the API) are never shown:
        # the reserved _secret scope matches "*" too, and older streams keep some of them under
        # the project.
        keep=lambda raw: shown_to_clients(event_type_of(raw.subject, g.store.prefix) or ""),
    )


ROUTES = [all_events]
