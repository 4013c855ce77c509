"""Tables: a project's structured data — typed columns, rows with ``_meta``, queries."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

ColumnType = Literal["text", "number", "boolean", "date", "json"]
#: The core's bounds (a test keeps them equal).
MAX_COLUMNS = 100
MAX_ROWS_PER_INSERT = 100
TableName = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
Description = Annotated[str, msgspec.Meta(max_length=2000)]
Project = Annotated[str, msgspec.Meta(min_length=1, max_length=63)]


class Column(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=63)]
    type: ColumnType
    required: bool = False


Columns = Annotated[list[Column], msgspec.Meta(max_length=MAX_COLUMNS)]


class TableCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``POST /v1/tables``: a table of ``project``; its name is unique in the project."""

    project: Project
    name: TableName
    columns: Columns
    description: Description | None = None


class TableUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``PATCH /v1/tables/{id}``: fields left out keep their value; ``description: null`` clears
    it; ``columns`` replace the definitions whole (rows already stored are not rewritten)."""

    name: TableName | msgspec.UnsetType = msgspec.UNSET
    description: Description | msgspec.UnsetType | None = msgspec.UNSET
    columns: Columns | msgspec.UnsetType = msgspec.UNSET


class Table(msgspec.Struct, kw_only=True):
    id: str
    project: str
    name: str
    description: str | None
    columns: list[Column]
    row_count: int
    created_at: str
    updated_at: str


class TableList(msgspec.Struct, kw_only=True):
    tables: list[Table]


#: A row: ``id`` (``row_…``), its column values, and ``_meta`` {created_at, created_by,
#: updated_at, updated_by} (``api`` / ``api:<key name>``, or ``run:<run_id>`` for a crew).
Row = dict[str, Any]
#: ``POST /v1/tables/{id}/rows``: one row object, or an array of at most 100.
RowsIn = dict[str, Any] | Annotated[list[dict[str, Any]], msgspec.Meta(max_length=MAX_ROWS_PER_INSERT)]


class RowList(msgspec.Struct, kw_only=True):
    rows: list[Row]


class RowPage(msgspec.Struct, kw_only=True):
    """``GET /v1/tables/{id}/rows``: the page, and how many rows match in all. A page ends once
    4 MiB of rows are in it (at least one row), so it may hold fewer than ``limit`` though more
    rows match: the next page starts at ``offset + len(rows)``, until that reaches ``total``."""

    rows: list[Row]
    total: int
    limit: int
    offset: int
