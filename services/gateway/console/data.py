"""A project's tables (the data crews and the API write): the tables the viewer sees, and one
table's rows a page at a time. Read-only here: tables are defined by deploys and the API, and
rows are written by crews."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import msgspec
from litestar import Request, Response, get

from ..context import gw, project_name
from ..errors import bad_request, not_found
from ..tables import _table
from .render import page
from .viewer import viewer

READ = {"role": "read", "page": True}
PAGE_SIZE = 50
#: A page of rows ends once this much of their stored JSON was read (at least one row): they are
#: decoded here to be shown, and a JSON cell decodes to many times its size.
PAGE_BYTES = 1 << 20


@get("/tables", opt=READ, include_in_schema=False)
async def tables_page(request: Request[Any, Any, Any]) -> Response[str]:
    g, who = gw(request), viewer(request)
    projects = [p["name"] for p in await g.rm.projects() if who.sees(p["name"])]
    asked = request.query_params.get("project") or None
    if asked is not None:
        asked = project_name(asked)
    if asked is not None and asked not in projects:
        asked = None  # a project this key does not see: nothing, and its name is not echoed
        projects_shown: list[str] = []
    else:
        projects_shown = [p for p in projects if asked is None or p == asked]
    tables = [t for p in projects_shown for t in await g.rm.tables(p)]
    return page(
        request,
        "tables.html",
        tables=tables,
        projects=projects,
        filters={"project": asked or ""},
        nav="tables",
    )


@get("/tables/{table_id:str}", opt=READ, include_in_schema=False)
async def table_page(request: Request[Any, Any, Any], table_id: str) -> Response[str]:
    g, who = gw(request), viewer(request)
    table = await _table(g, table_id)
    if not who.sees(table["project"]):
        raise not_found(f"table {table_id}")
    try:
        offset = min(max(int(request.query_params.get("offset") or 0), 0), 2**62)  # SQLite's range
    except ValueError:
        raise bad_request("offset must be a number") from None
    stored, total = await g.rm.rows_json(
        table_id, filters=[], sort=[], limit=PAGE_SIZE, offset=offset, budget=PAGE_BYTES
    )
    rows = [msgspec.json.decode(r) for r in stored]
    following = offset + len(rows)
    return page(
        request,
        "table.html",
        table=table,
        rows=rows,
        total=total,
        offset=offset,
        next_url="?" + urlencode({"offset": following}) if rows and following < total else None,
        previous_url="?" + urlencode({"offset": max(offset - PAGE_SIZE, 0)}) if offset else None,
        nav="tables",
    )


ROUTES = [tables_page, table_page]
