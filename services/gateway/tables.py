"""Tables: a project's structured data. Definitions need the deploy role; rows the run role (what
a crew may do as well); reads the read role.

Every write is one ``table.*`` event on the table's aggregate; answers come from the read model
once it has applied that event. Rows are checked against the table's columns as the read model
has them; a definition changed at the same moment may see a row checked against the one before
(as if the row had been written a moment earlier: stored rows are never rewritten).
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, delete, get, patch, post
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.response import Response

from crewyard.contract.common import Deleted
from crewyard.contract.tables import (
    Row,
    RowList,
    RowPage,
    RowsIn,
    Table,
    TableCreate,
    TableList,
    TableUpdate,
)
from crewyard.core import tables as core
from crewyard.core.events import (
    NewRow,
    Payload,
    RowDeleted,
    RowsInserted,
    RowUpdated,
    TableCreated,
    TableDeleted,
    TableUpdated,
)
from crewyard.core.ids import is_id, new_id

from .access import allow
from .context import Gateway, gw, project_name
from .errors import ApiError, bad_request, conflict, not_found
from .openapi import TEXT, documented, page_size, param

READ, RUN, DEPLOY = {"role": "read"}, {"role": "run"}, {"role": "deploy"}
MAX_PAGE = 500


def who(request: Request[Any, Any, Any]) -> str:
    """``api``, or ``api:<key name>`` when the request was authenticated with a named key."""
    name = getattr(request.scope.get("auth"), "name", None)
    return f"api:{name}" if isinstance(name, str) and name else "api"


def _invalid(exc: core.InvalidTable) -> ApiError:
    return bad_request(str(exc), "invalid_table")


def _columns(columns: list[Any]) -> list[core.Column]:
    try:
        return core.check_columns([msgspec.convert(msgspec.to_builtins(c), core.Column) for c in columns])
    except core.InvalidTable as exc:
        raise _invalid(exc) from None


async def _table(g: Gateway, table_id: str) -> dict[str, Any]:
    view = await g.rm.table(table_id) if is_id(table_id, "tbl") else None
    if view is None and is_id(table_id, "tbl"):
        await g.fresh()
        view = await g.rm.table(table_id)
    if view is None:
        raise not_found(f"table {table_id}")
    return view


def _core_columns(view: dict[str, Any]) -> list[core.Column]:
    return msgspec.convert(view["columns"], list[core.Column])


async def _name_is_free(g: Gateway, project: str, name: str, table_id: str | None = None) -> None:
    await g.fresh()
    other = await g.rm.table_by_name(project, name)
    if other is not None and other["id"] != table_id:
        raise conflict(f"project {project} already has a table called {name!r} ({other['id']})")


async def _write(g: Gateway, payload: Payload, project: str, table_id: str, expected: int | None) -> None:
    await g.commit_payload(payload, project, table_id, expected)


@post("/v1/tables", status_code=201, opt=DEPLOY)
async def create_table(request: Request[Any, Any, Any], data: TableCreate) -> Table:
    """Create a table of a project (its name is unique in the project)."""
    g = gw(request)
    project = project_name(data.project)
    allow(request, project)
    try:
        name = core.check_table_name(data.name)
        description = core.check_description(data.description)
    except core.InvalidTable as exc:
        raise _invalid(exc) from None
    columns = _columns(data.columns)
    await g.ensure_project(project)
    await _name_is_free(g, project, name)
    table_id = new_id("tbl")
    created = TableCreated(name=name, columns=columns, description=description, by=who(request))
    await g.create_counted(created, project, table_id, g.settings.max_tables)
    return msgspec.convert(await _table(g, table_id), Table)


@get("/v1/tables", opt=READ)
async def list_tables(request: Request[Any, Any, Any], project: str) -> TableList:
    """``?project=``: the project's tables."""
    g = gw(request)
    allow(request, project_name(project))
    return msgspec.convert({"tables": await g.rm.tables(project)}, TableList)


@get("/v1/tables/{table_id:str}", opt=READ)
async def get_table(request: Request[Any, Any, Any], table_id: str) -> Table:
    return msgspec.convert(await _table(gw(request), table_id), Table)


@patch("/v1/tables/{table_id:str}", opt=DEPLOY)
async def update_table(request: Request[Any, Any, Any], table_id: str, data: TableUpdate) -> Table:
    """Rename, describe, or replace the columns (rows already stored are kept as they are)."""
    g = gw(request)
    view = await _table(g, table_id)
    try:
        name = view["name"] if data.name is msgspec.UNSET else core.check_table_name(data.name)
        description = (
            view["description"]
            if data.description is msgspec.UNSET
            else core.check_description(data.description)
        )
    except core.InvalidTable as exc:
        raise _invalid(exc) from None
    columns = _core_columns(view) if data.columns is msgspec.UNSET else _columns(data.columns)
    if name != view["name"]:
        await _name_is_free(g, view["project"], name, table_id)
    updated = TableUpdated(name=name, columns=columns, description=description, by=who(request))
    await _write(g, updated, view["project"], table_id, None)
    return msgspec.convert(await _table(g, table_id), Table)


@delete("/v1/tables/{table_id:str}", status_code=200, opt=DEPLOY)
async def delete_table(request: Request[Any, Any, Any], table_id: str) -> Deleted:
    """Delete a table and its rows."""
    g = gw(request)
    view = await _table(g, table_id)
    await _write(g, TableDeleted(by=who(request)), view["project"], table_id, None)
    return Deleted(id=table_id)


@post("/v1/tables/{table_id:str}/rows", status_code=201, opt=RUN)
async def insert_rows(
    request: Request[Any, Any, Any], table_id: str, data: RowsIn
) -> Response[Row | RowList]:
    """One row object (answered with the row) or an array of at most 100 (``{"rows": […]}``)."""
    g = gw(request)
    view = await _table(g, table_id)
    many = isinstance(data, list)
    try:
        checked = core.check_rows(_core_columns(view), data if isinstance(data, list) else [data])
    except core.InvalidTable as exc:
        raise _invalid(exc) from None
    rows = [NewRow(id=new_id("row"), values=values) for values in checked]
    await _write(g, RowsInserted(rows=rows, by=who(request)), view["project"], table_id, None)
    stored = [await g.rm.row(table_id, r.id) for r in rows]
    if any(r is None for r in stored):
        raise ApiError(503, "unavailable", "the rows were stored but the read model is behind")
    rows_out: list[Row] = [r for r in stored if r is not None]
    return Response(RowList(rows=rows_out) if many else rows_out[0], status_code=201)


@get(
    "/v1/tables/{table_id:str}/rows",
    opt=READ,
    operation_class=documented(
        param("filter", TEXT, "column:op:value (repeatable), e.g. score:gte:3"),
        param("sort", TEXT, "column or -column (repeatable)"),
        page_size(50, MAX_PAGE),
        param("offset", Schema(type=OpenAPIType.INTEGER, minimum=0, default=0), "Rows to skip"),
    ),
)
async def query_rows(request: Request[Any, Any, Any], table_id: str) -> RowPage:
    """``?filter=column:op:value`` (repeatable up to 20 times; op: eq ne gt gte lt lte contains
    is_null not_null), ``?sort=column`` or ``-column`` (up to 5; also ``_meta.created_at``),
    ``?limit=`` (1-500, default 50) and ``?offset=``."""
    g = gw(request)
    view = await _table(g, table_id)
    columns = _core_columns(view)
    q = request.query_params
    try:
        filters, sort = core.parse_query(columns, q.getall("filter", []), q.getall("sort", []))
    except core.InvalidTable as exc:
        raise _invalid(exc) from None
    limit, offset = (
        _int(q.get("limit"), "limit", 50, 1, MAX_PAGE),
        _int(q.get("offset"), "offset", 0, 0, 2**62),
    )
    rows, total = await g.rm.rows(table_id, filters=filters, sort=sort, limit=limit, offset=offset)
    return RowPage(rows=rows, total=total, limit=limit, offset=offset)


def _int(text: str | None, name: str, default: int, low: int, high: int) -> int:
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise bad_request(f"{name} must be a whole number") from None
    if not low <= value <= high:
        raise bad_request(f"{name} must be between {low} and {high}")
    return value


async def _row(g: Gateway, table_id: str, row_id: str) -> dict[str, Any]:
    row = await g.rm.row(table_id, row_id) if is_id(row_id, "row") else None
    if row is None:
        await g.fresh()
        row = await g.rm.row(table_id, row_id) if is_id(row_id, "row") else None
    if row is None:
        raise not_found(f"row {row_id} of table {table_id}")
    return row


@get("/v1/tables/{table_id:str}/rows/{row_id:str}", opt=READ)
async def get_row(request: Request[Any, Any, Any], table_id: str, row_id: str) -> dict[str, Any]:
    g = gw(request)
    await _table(g, table_id)
    return await _row(g, table_id, row_id)


@patch("/v1/tables/{table_id:str}/rows/{row_id:str}", opt=RUN)
async def update_row(
    request: Request[Any, Any, Any], table_id: str, row_id: str, data: dict[str, Any]
) -> dict[str, Any]:
    """Change some cells of a row (``null`` empties a cell; a required one cannot be emptied)."""
    g = gw(request)
    view = await _table(g, table_id)
    await _row(g, table_id, row_id)
    try:
        values = core.check_row(_core_columns(view), data, partial=True)
    except core.InvalidTable as exc:
        raise _invalid(exc) from None
    await _write(
        g, RowUpdated(row_id=row_id, values=values, by=who(request)), view["project"], table_id, None
    )
    return await _row(g, table_id, row_id)


@delete("/v1/tables/{table_id:str}/rows/{row_id:str}", status_code=200, opt=RUN)
async def delete_row(request: Request[Any, Any, Any], table_id: str, row_id: str) -> Deleted:
    g = gw(request)
    view = await _table(g, table_id)
    await _row(g, table_id, row_id)
    await _write(g, RowDeleted(row_id=row_id, by=who(request)), view["project"], table_id, None)
    return Deleted(id=row_id)


ROUTES = [
    create_table,
    list_tables,
    get_table,
    update_table,
    delete_table,
    insert_rows,
    query_rows,
    get_row,
    update_row,
    delete_row,
]
