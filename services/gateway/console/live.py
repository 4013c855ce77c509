"""The console's live streams: SSE whose messages are HTML fragments rendered here.

Each page has one stream. Every message is ``event: html`` with a fragment of elements that
carry an ``id``; the page's script replaces the element with that id, or inserts it into the
element named by ``data-into`` (at the start with ``data-at="start"``), or removes it
(``data-remove``). ``event: end`` says the stream is over for good (a finished run or build),
so the browser does not reconnect. Message ids are stream sequences, so a browser that
reconnects (``Last-Event-ID``) gets exactly what it missed.

Fragments are rendered by the same templates as the pages, with autoescaping: the script only
places elements, it never builds markup from event data.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import msgspec
from litestar import Request, get

from crewyard.core import run_state as rs
from crewyard.core import subjects
from crewyard.core.events import TERMINAL_TYPES, DeploymentFailed, DeploymentReady

from ..context import Gateway, gw
from ..errors import ApiError, not_found
from ..sse import STREAM, Batches, closed_stream, followed, resume_after, resume_from, sse_response
from .pages import _decoded, _names, matches, run_filters, visible_run
from .render import fragment
from .timeline import Timeline
from .viewer import Viewer, viewer

END = b"event: end\ndata: \n\n"
_BUILD_END = {DeploymentReady.TYPE, DeploymentFailed.TYPE}
_json = msgspec.json.Decoder()
_LINES = re.compile(r"\r\n|\r|\n")
#: Events placed and rendered between two turns given back to the event loop. A replay of the
#: longest run a crew may emit (25,000 events, ~160 us each to render) is seconds of CPU, and
#: the loop serves every other service of ``crewyard up`` meanwhile: ~20 ms at a time at most.
_YIELD_EVERY = 128


def message(seq: int, html: str) -> bytes:
    """One SSE message carrying an HTML fragment (one ``data:`` line per line of it). A line
    ends at CR as well as LF for a browser: a crew's text with a lone CR (a progress bar, or
    ``\\revent: end``) must not end the ``data:`` field and start fields of its own."""
    data = "".join(f"data: {line}\n" for line in _LINES.split(html))
    return f"id: {seq}\nevent: html\n{data}\n".encode()


def envelope(rendered: bytes) -> dict[str, Any]:
    """The event envelope inside an SSE message the API renders (``data:`` is its JSON)."""
    _, _, data = rendered.partition(b"\ndata: ")
    value = _json.decode(data.strip())
    return value if isinstance(value, dict) else {}


def _data(event: dict[str, Any]) -> dict[str, Any]:
    data = event.get("data")
    return data if isinstance(data, dict) else {}


# -- the runs list -----------------------------------------------------------------------------


@get("/live/runs", opt=STREAM, include_in_schema=False)
async def runs_live(request: Request[Any, Any, Any]) -> Any:
    """Rows of the runs list as runs are queued, start and end (only run lifecycle events are
    read: the filter is the server's, so a chatty run costs this stream nothing)."""
    g, who = gw(request), viewer(request)
    filters = run_filters(request, who)
    first = request.query_params.get("first") == "1"
    after = resume_after(request)
    start = after + 1 if after is not None else await g.store.last_seq() + 1
    project = filters["project"] or "*"
    if project != "*" and not who.sees(project):
        # A 404 as the project's own pages answer: an empty 200 would have the browser's
        # EventSource come back every few seconds, for as long as the page stays open.
        raise not_found(f"project {project}")
    filt = f"{g.store.prefix}.{project}.run.*.run.>"
    batches = followed(g.store, filt, start, g.settings.sse_ping_s)
    await anext(batches)  # the consumer exists: a stream that cannot be read is a 503 now
    return sse_response(_rows(g, who, batches, filters, first), stream="console", closing=g.closing)


async def _rows(g: Gateway, who: Viewer, batches: Batches, filters: dict[str, str], first: bool) -> Batches:
    async for batch in batches:
        if not batch:
            yield batch
            continue
        latest: dict[str, int] = {}
        for seq, _type, text in batch:
            run_id = envelope(text).get("aggregate_id")
            if isinstance(run_id, str):
                latest[run_id] = seq
        await g.rm.wait_for(batch[-1][0], timeout=5.0)
        rows = [
            r for r in [await g.rm.run(rid) for rid in latest] if r is not None and who.sees(r["project"])
        ]
        names = await _names(g, rows)
        out = []
        for run in rows:
            html = fragment(
                "_run_row.html",
                run=run,
                names=names,
                live=True,
                match=matches(run, filters),
                first=first,
            )
            out.append((latest[run["id"]], "html", message(latest[run["id"]], html)))
        yield sorted(out)


# -- one run -----------------------------------------------------------------------------------


@get("/live/runs/{run_id:str}", opt=STREAM, include_in_schema=False)
async def run_live(request: Request[Any, Any, Any], run_id: str) -> Any:
    """The run's timeline, header and artifacts as its events arrive; ends with the run."""
    g, who = gw(request), viewer(request)
    seen = resume_after(request)
    run = await visible_run(g, who, run_id)
    filt = subjects.any_project_aggregate_filter("run", run_id, g.store.prefix)
    start = await resume_from(g.store, filt, seen, ended=run["status"] in rs.TERMINAL)
    if start is None:
        return closed_stream(END)
    after = start - 1
    feed = g.hub.acquire(run_id)
    if not await feed.wait_reading(g.store.read_timeout):
        g.hub.release(run_id)
        raise ApiError(503, "unavailable", "the event stream cannot be read right now; try again")
    return sse_response(
        _timeline(g, who, run_id, feed.batches(1), after),
        is_last=lambda t: t in TERMINAL_TYPES,
        release=lambda: g.hub.release(run_id),
        stream="console",
        closing=g.closing,
    )


async def _timeline(g: Gateway, who: Viewer, run_id: str, batches: Batches, after: int) -> Batches:
    """Every event folded from the run's first one; those after ``after`` sent as fragments."""
    timeline = Timeline()
    async for batch in batches:
        if not batch:
            yield batch
            continue
        out, html, changed = [], [], False
        for done, (seq, event_type, text) in enumerate(batch, 1):
            if done % _YIELD_EVERY == 0:
                await asyncio.sleep(0)
            event = envelope(text)
            data = _data(event)
            placed = timeline.place(seq, event_type, data)
            if seq <= after:
                continue
            html.append(
                fragment(
                    "_event.html",
                    seq=seq,
                    type=event_type,
                    event=event,
                    data=data,
                    placed=placed,
                    run_id=run_id,
                )
            )
            changed = changed or event_type.startswith("run.") or event_type == "artifact"
            out.append((seq, event_type))
        if not out:
            continue
        # One message per batch (a replay of a long run is one write); the header and the
        # artifacts once, as the read model has them after the batch's last event.
        last_seq, last_type = out[-1]
        if changed:
            html.append(await _run_parts(g, who, run_id, last_seq))
        body = message(last_seq, "\n".join(html))
        ending = next((t for _, t in out if t in TERMINAL_TYPES), None)
        if ending is not None:
            body += END
        yield [(last_seq, ending or last_type, body)]


async def _run_parts(g: Gateway, who: Viewer, run_id: str, seq: int) -> str:
    """The run's header and artifact list as the read model has them once it holds ``seq``."""
    await g.rm.wait_for(seq, timeout=5.0)
    run = await g.rm.run(run_id)
    if run is None:
        return ""
    return fragment("_run_parts.html", who=who, run=_decoded(run), artifacts=await g.rm.artifacts(run_id))


# -- a build -----------------------------------------------------------------------------------


@get("/live/deployments/{dep_id:str}", opt=STREAM, include_in_schema=False)
async def build_live(request: Request[Any, Any, Any], dep_id: str) -> Any:
    """The build log line by line, and the version's status when the build ends."""
    g, who = gw(request), viewer(request)
    dep = await g.deployment(dep_id)
    if not who.sees(dep["project"]):
        raise not_found(f"deployment {dep_id}")
    filt = subjects.aggregate_filter(dep["project"], "deployment", dep["id"], g.store.prefix)
    after = resume_after(request) or 0
    batches = followed(g.store, filt, after + 1, g.settings.sse_ping_s)
    await anext(batches)
    return sse_response(
        _build(g, dep["id"], batches), is_last=lambda t: t in _BUILD_END, stream="console", closing=g.closing
    )


async def _build(g: Gateway, dep_id: str, batches: Batches) -> Batches:
    async for batch in batches:
        out = []
        for seq, event_type, text in batch:
            event = envelope(text)
            data = _data(event)
            html = fragment("_build_line.html", seq=seq, type=event_type, event=event, data=data)
            if event_type in _BUILD_END or event_type == "deployment.build.started":
                await g.rm.wait_for(seq, timeout=5.0)
                dep = await g.rm.deployment(dep_id)
                if dep is not None:
                    html += "\n" + fragment("_dep_status.html", dep=dep)
            body = message(seq, html)
            if event_type in _BUILD_END:
                body += END
            out.append((seq, event_type, body))
        yield out


ROUTES = [runs_live, run_live, build_live]
