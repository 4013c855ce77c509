"""Tables: a project's structured data. Definitions need the deploy role; rows the run role (what
a crew may do as well); reads the read role.

Every write is one ``table.*`` event on the table's aggregate. A definition change, a row update
and a row insert near the table's bound are decided on the table as of its last event on the
stream (the read model once it holds that event) and appended expecting that event: a PATCH
racing another is decided again on what the other wrote, so fields it did not send keep the
other's values; an updated row is checked whole (``core.merge_row``); and inserts racing through
any number of gateways and runners are counted against the table's bound on rows and bytes
(``core.check_room``, 409 ``limit_reached``) one after the other. Inserts that leave the table
within half its bound, and deletes, are appended as they come (many writers of one table would
refuse each other).
A write's answer is built from the event it stored, so a gateway whose read model is behind still
answers it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import msgspec
from litestar import Request, delete, get, patch, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.response import Response
from litestar.types import ASGIApp

from crewyard.backoff import Backoff
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
    Event,
    NewRow,
    Payload,
    RowDeleted,
    RowsInserted,
    RowUpdated,
    TableCreated,
    TableDeleted,
    TableUpdated,
    make_event,
)
from crewyard.core.ids import is_id, new_id
from crewyard.eventstore import ConcurrencyConflict
from crewyard.launch import idempotent_event_id
from crewyard.readmodel import ROWS_PAGE_BYTES, TableSize

from .access import allow
from .context import CATCH_UP_S, Gateway, IdempotencyKey, behind, gw, project_name
from .errors import ApiError, bad_request, conflict, not_found
from .idempotency import body_hash, first_event, same_request
from .openapi import TEXT, JsonBytes, answers, documented, page_size, param

T = TypeVar("T")
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
    return await g.table(table_id)


async def _as_of_stream(g: Gateway, project: str, table_id: str) -> int:
    """The table's last event on the stream, once the read model holds it: what the read model
    has of the table is then the table as of that event (an append expecting it fails if anything
    came after)."""
    seq = await g.store.last_seq_of(g.store.aggregate_filter(project, "table", table_id)) or 0
    if not await g.rm.wait_for(seq, CATCH_UP_S):
        raise behind(f"table {table_id}")
    return seq


def _turns() -> Backoff:
    return Backoff(15, first=0.02, most=0.5, jitter=True)


def _too_busy(table_id: str) -> ApiError:
    return ApiError(503, "unavailable", f"table {table_id} kept changing; try again")


def _core_columns(view: dict[str, Any]) -> list[core.Column]:
    return msgspec.convert(view["columns"], list[core.Column])


async def _name_is_free(g: Gateway, project: str, name: str, table_id: str | None = None) -> None:
    await g.fresh()
    other = await g.rm.table_by_name(project, name)
    if other is not None and other["id"] != table_id:
        raise conflict(f"project {project} already has a table called {name!r} ({other['id']})")


async def _write(g: Gateway, payload: Payload, project: str, table_id: str, expected: int | None) -> Event:
    """Append ``payload`` (expecting the table's event ``expected``, unless None); the event sent."""
    event = make_event(payload, project=project, aggregate_id=table_id, event_id=new_id("evt"))
    await g.commit(event, expected)
    return event


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
    view = await g.rm.table(table_id)
    if view is None:  # this gateway's read model is behind: answer with what was stored
        stored = await g.store.load(project, "table", table_id, types=TableCreated.TYPE)
        if not stored:
            raise ApiError(503, "unavailable", f"table {table_id} was created; the read model is behind")
        at = stored[0].event.time.isoformat()
        view = {
            "id": table_id,
            "project": project,
            "name": name,
            "description": description,
            "columns": msgspec.to_builtins(columns),
            "row_count": 0,
            "created_at": at,
            "updated_at": at,
        }
    return msgspec.convert(view, Table)


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
    project = (await _table(g, table_id))["project"]
    try:
        new_name = None if data.name is msgspec.UNSET else core.check_table_name(data.name)
        new_description = (
            msgspec.UNSET if data.description is msgspec.UNSET else core.check_description(data.description)
        )
    except core.InvalidTable as exc:
        raise _invalid(exc) from None
    new_columns = None if data.columns is msgspec.UNSET else _columns(data.columns)
    turns = _turns()
    while not turns.expired:
        seq = await _as_of_stream(g, project, table_id)
        view = await _table(g, table_id)  # the table as of ``seq``: the fields not sent keep its values
        name = view["name"] if new_name is None else new_name
        description = view["description"] if new_description is msgspec.UNSET else new_description
        columns = _core_columns(view) if new_columns is None else new_columns
        if name != view["name"]:
            await _name_is_free(g, project, name, table_id)
        updated = TableUpdated(name=name, columns=columns, description=description, by=who(request))
        try:
            event = await _write(g, updated, project, table_id, seq)
        except ConcurrencyConflict:  # changed meanwhile (through any gateway): decide again
            await turns.pause()
            continue
        changed = {"name": name, "description": description, "columns": msgspec.to_builtins(columns)}
        return msgspec.convert({**view, **changed, "updated_at": event.time.isoformat()}, Table)
    raise _too_busy(table_id)


@delete("/v1/tables/{table_id:str}", status_code=200, opt=DEPLOY)
async def delete_table(request: Request[Any, Any, Any], table_id: str) -> Deleted:
    """Delete a table and its rows."""
    g = gw(request)
    view = await _table(g, table_id)
    await _write(g, TableDeleted(by=who(request)), view["project"], table_id, None)
    return Deleted(id=table_id)


@post(
    "/v1/tables/{table_id:str}/rows",
    status_code=201,
    opt=RUN,
    responses={
        200: ResponseSpec(
            cast("Any", Row | RowList),  # a union: the OpenAPI schema is a oneOf of the two
            generate_examples=False,
            description="A repeated insert (same Idempotency-Key): what the first answered",
        )
    },
)
async def insert_rows(
    request: Request[Any, Any, Any], table_id: str, data: RowsIn, idempotency_key: IdempotencyKey = None
) -> Response[Row | RowList]:
    """One row object (answered with the row) or an array of at most 100 (``{"rows": […]}``).
    With an ``Idempotency-Key`` (per table), a repeat answers with the rows the first made. A
    table holds at most 100,000 rows whose values take 64 MiB: past that, 409 ``limit_reached``.

    Near the table's bound (past half of it: ``core.far_from_full``), decided on the table as of
    its last event on the stream and appended expecting it, as a row update is, so that inserts
    racing through any number of gateways and runners are counted against the bound one after
    the other."""
    g = gw(request)
    view = await _table(g, table_id)
    project, key, many = view["project"], idempotency_key, isinstance(data, list)
    request_hash = body_hash(await request.json()) if key else None
    turns = _turns()
    near = False
    while not turns.expired:
        seq = None
        if key or near:
            # As of the table's last event, a key the read model does not know is a new one (a
            # read model behind the stream, past its de-duplication window, would insert the
            # rows twice), and its size is the table's.
            seq = await _as_of_stream(g, project, table_id)
            view = await _table(g, table_id)
        earlier = await g.rm.rows_by_idempotency_key(table_id, key) if key else None
        if earlier is not None:
            same_request(earlier[1], request_hash)  # another body: refused without a read
            return await _inserted_before(g, earlier[0], request_hash, many)
        try:
            checked = core.check_rows(_core_columns(view), data if isinstance(data, list) else [data])
        except core.InvalidTable as exc:
            raise _invalid(exc) from None
        now, size = await g.rm.table_size(table_id), sum(map(core.stored_size, checked))
        if not near and not core.far_from_full(
            *await _at_most(g, project, table_id, now), len(checked), size
        ):
            near = True  # decide again on the table as of its last event
            continue
        _has_room(now.rows, now.stored, len(checked), size)
        rows = [NewRow(id=new_id("row"), values=values) for values in checked]
        inserted = RowsInserted(rows=rows, by=who(request), idempotency_key=key, request_hash=request_hash)
        # With a key, the event id is derived from it: a concurrent repeat is dropped by the stream.
        event_id = idempotent_event_id(project, f"rows\0{table_id}\0{key}") if key else new_id("evt")
        event = make_event(inserted, project=project, aggregate_id=table_id, event_id=event_id)
        try:
            appended = await g.store.append_acked(event, expected_seq=seq if near else None)
        except ConcurrencyConflict:  # the table changed meanwhile: count it again
            await turns.pause()
            continue
        if appended.duplicate:
            return await _inserted_before(g, appended.seq, request_hash, many)
        await g.rm.wait_for(appended.seq)
        return _rows_answer(event, many, 201)
    raise _too_busy(table_id)


async def _at_most(g: Gateway, project: str, table_id: str, seen: TableSize) -> tuple[int, int]:
    """The most rows and bytes the table may hold now, when the read model (which has ``seen``)
    may be behind the stream: every stream event after the table's last one it applied may be an
    insert of the table (an upper bound; a read model being rebuilt is far behind)."""
    last = await g.store.last_seq_of(g.store.aggregate_filter(project, "table", table_id)) or 0
    behind = max(0, last - seen.position)
    return seen.rows + behind * core.MAX_ROWS_PER_INSERT, seen.stored + behind * core.MAX_INSERT_BYTES


def _has_room(rows: int, stored: int, more_rows: int, more_bytes: int) -> None:
    try:
        core.check_room(rows, stored, more_rows, more_bytes)
    except core.TableFull as exc:
        raise ApiError(409, "limit_reached", str(exc)) from None


async def _inserted_before(
    g: Gateway, seq: int, request_hash: str | None, many: bool
) -> Response[Row | RowList]:
    """The answer to the insert that first used an Idempotency-Key, from its event at ``seq``
    (a repeat is the same body: one row or an array, as the first was)."""
    return _rows_answer(await first_event(g, seq, RowsInserted, request_hash), many, 200)


def _rows_answer(event: Event, many: bool, status: int) -> Response[Row | RowList]:
    """The rows of a ``table.rows_inserted`` event, as they were stored."""
    inserted = event.data
    assert isinstance(inserted, RowsInserted)
    at = event.time.isoformat()
    meta = {"created_at": at, "created_by": inserted.by, "updated_at": at, "updated_by": inserted.by}
    rows_out: list[Row] = [{"id": r.id, **r.values, "_meta": meta} for r in inserted.rows]
    return Response(RowList(rows=rows_out) if many else rows_out[0], status_code=status)


@get(
    "/v1/tables/{table_id:str}/rows",
    opt=READ,
    responses=answers(RowPage),
    operation_class=documented(
        param("filter", TEXT, "column:op:value (repeatable), e.g. score:gte:3"),
        param("sort", TEXT, "column or -column (repeatable)"),
        page_size(50, MAX_PAGE),
        param("offset", Schema(type=OpenAPIType.INTEGER, minimum=0, default=0), "Rows to skip"),
    ),
)
async def query_rows(request: Request[Any, Any, Any], table_id: str) -> ASGIApp:
    """``?filter=column:op:value`` (repeatable up to 20 times; op: eq ne gt gte lt lte contains
    is_null not_null), ``?sort=column`` or ``-column`` (up to 5; also ``_meta.created_at``),
    ``?limit=`` (1-500, default 50) and ``?offset=``. A page ends once 4 MiB of rows are in it
    (at least one row), so it may hold fewer than ``limit``: the next page starts at ``offset``
    plus the rows shown, until that reaches ``total``. Rows go out as the read model holds them
    (``ROW_JSON``), never decoded only to be encoded again."""
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
    rows, total = await g.rm.rows_json(
        table_id, filters=filters, sort=sort, limit=limit, offset=offset, budget=ROWS_PAGE_BYTES
    )
    end = b'],"total":%d,"limit":%d,"offset":%d}' % (total, limit, offset)
    return JsonBytes(b"".join((b'{"rows":[', b",".join(rows), end)))


def _int(text: str | None, name: str, default: int, low: int, high: int) -> int:
    if text is None:
        return default
    # ASCII digits only: int() also takes "1_0", " 10 " and other scripts' digits.
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        raise bad_request(f"{name} must be a whole number")
    value = int(text)
    if not low <= value <= high:
        raise bad_request(f"{name} must be between {low} and {high}")
    return value


async def _found(
    g: Gateway, view: dict[str, Any], row_id: str, read: Callable[[str, str], Awaitable[T | None]]
) -> T:
    """A row of the table ``view`` as ``read`` gives it; a miss is settled on the table's events
    like a table's."""
    table_id, what = view["id"], f"row {row_id[:100]} of table {view['id']}"
    if not is_id(row_id, "row"):
        raise not_found(what)
    row = await read(table_id, row_id)
    if row is None:
        await g.settle(what, g.store.aggregate_filter(view["project"], "table", table_id), known=False)
        row = await read(table_id, row_id)
    if row is None:
        raise not_found(what)
    return row


async def _row(g: Gateway, view: dict[str, Any], row_id: str) -> dict[str, Any]:
    return await _found(g, view, row_id, g.rm.row)


@get("/v1/tables/{table_id:str}/rows/{row_id:str}", opt=READ, responses=answers(Row))
async def get_row(request: Request[Any, Any, Any], table_id: str, row_id: str) -> ASGIApp:
    """The row as the read model holds it (``ROW_JSON``)."""
    g = gw(request)
    return JsonBytes(await _found(g, await _table(g, table_id), row_id, g.rm.row_json))


@patch("/v1/tables/{table_id:str}/rows/{row_id:str}", opt=RUN)
async def update_row(
    request: Request[Any, Any, Any], table_id: str, row_id: str, data: dict[str, Any]
) -> dict[str, Any]:
    """Change some cells of a row (``null`` empties a cell; a required one cannot be emptied)."""
    g = gw(request)
    project, by = (await _table(g, table_id))["project"], who(request)
    turns = _turns()
    while not turns.expired:
        seq = await _as_of_stream(g, project, table_id)
        view = await _table(g, table_id)  # the table and the row as of ``seq``
        stored = await _row(g, view, row_id)
        try:
            values = core.check_row(_core_columns(view), data, partial=True)
            merged = core.merge_row(stored, values)
        except core.InvalidTable as exc:
            raise _invalid(exc) from None
        before = {k: v for k, v in stored.items() if k not in ("id", "_meta")}
        now = await g.rm.table_size(table_id)
        _has_room(now.rows, now.stored, 0, core.stored_size(merged) - core.stored_size(before))
        try:
            event = await _write(g, RowUpdated(row_id=row_id, values=values, by=by), project, table_id, seq)
        except ConcurrencyConflict:  # the table changed meanwhile: check the row again
            await turns.pause()
            continue
        meta = {**stored["_meta"], "updated_at": event.time.isoformat(), "updated_by": by}
        return {"id": row_id, **merged, "_meta": meta}
    raise _too_busy(table_id)


@delete("/v1/tables/{table_id:str}/rows/{row_id:str}", status_code=200, opt=RUN)
async def delete_row(request: Request[Any, Any, Any], table_id: str, row_id: str) -> Deleted:
    g = gw(request)
    view = await _table(g, table_id)
    await _row(g, view, row_id)
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
