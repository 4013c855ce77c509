"""Tables: typed columns, rows checked against them, and the filters and sorts of a query (pure).

A table belongs to a project; its columns are ``{name, type, required}`` with types ``text``,
``number``, ``boolean``, ``date`` (an ISO 8601 date or date-time string) and ``json`` (any JSON
value). A row is a JSON object of column values; ``id`` and ``_meta`` are the platform's, so no
column may be called ``id`` or start with ``_``. Everything here names the column it refuses.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from typing import Any, Literal, get_args

import msgspec

from crewyard.errors import CrewyardError

from .bounds import OutOfBounds, check_json

ColumnType = Literal["text", "number", "boolean", "date", "json"]
COLUMN_TYPES: tuple[str, ...] = get_args(ColumnType)
COLUMN_PATTERN = r"[A-Za-z][A-Za-z0-9_]{0,62}"
TABLE_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}"
MAX_COLUMNS = 100
#: Rows per insert (the reference product's limit).
MAX_ROWS_PER_INSERT = 100
#: One row's values as JSON, and one insert's rows together.
MAX_ROW_BYTES = 64 * 1024
MAX_INSERT_BYTES = 512 * 1024
MAX_DESCRIPTION = 2000
#: One table's rows, and their values' JSON together, at most: a runner folds a table a crew uses
#: into memory for each run, and the read model holds it whole. An insert that leaves the table
#: within half of both (:func:`far_from_full`) is appended as it comes; past that, it is decided
#: on the table as of its last event and appended expecting that event, so writers racing on any
#: number of gateways and runners cannot pass the bound together (unless the inserts in flight at
#: the very half take the other half: 64 of the largest at once). Expecting the last event for
#: every insert made many writers of one table refuse each other (80 at once: 9% refused).
MAX_TABLE_ROWS = 100_000
MAX_TABLE_BYTES = 64 * 1024 * 1024
#: Filters and sort keys of one query: each filter is a pass over every row of the table, and
#: one query would otherwise hold the read model's query thread for as long as its asker wished.
MAX_FILTERS = 20
MAX_SORTS = 5
#: The text a ``contains`` filter looks for, at most: it is sought in every row's cell (the
#: search costs the cell's length times its own), twice a query, on the read model's connection.
MAX_CONTAINS = 256
_COLUMN_RE = re.compile(COLUMN_PATTERN)
_TABLE_NAME_RE = re.compile(TABLE_NAME_PATTERN)
#: A filter's number written as an integer: read exactly (a float keeps 53 bits), up to SQLite's
#: 64-bit integers (20 characters: a sign and 19 digits).
_INTEGER_RE = re.compile(r"[+-]?[0-9]{1,19}")
_enc = msgspec.json.Encoder()

FILTER_OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "contains", "is_null", "not_null")
#: Sort keys besides the columns.
META_SORTS = {"id": "id", "_meta.created_at": "created_at", "_meta.updated_at": "updated_at"}


class InvalidTable(CrewyardError, ValueError):
    """A table definition, row or query that cannot be taken; the message names the column."""


class TableFull(CrewyardError):
    """A write that would take a table past ``MAX_TABLE_ROWS`` or ``MAX_TABLE_BYTES``."""


class Column(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    type: ColumnType
    required: bool = False


def check_table_name(name: str) -> str:
    if not _TABLE_NAME_RE.fullmatch(name):
        raise InvalidTable(
            f"invalid table name {name!r}: 1-100 letters, digits, '_', '.' or '-', starting with"
            " a letter or digit"
        )
    return name


def check_description(text: str | None) -> str | None:
    if text is not None and len(text) > MAX_DESCRIPTION:
        raise InvalidTable(f"description is longer than {MAX_DESCRIPTION} characters")
    return text


def check_columns(columns: list[Column]) -> list[Column]:
    if len(columns) > MAX_COLUMNS:
        raise InvalidTable(f"a table has at most {MAX_COLUMNS} columns")
    seen: set[str] = set()
    for col in columns:
        if not _COLUMN_RE.fullmatch(col.name) or col.name == "id":
            raise InvalidTable(
                f"invalid column name {col.name!r}: up to 63 letters, digits and '_', starting with a"
                " letter (id and names starting with _ are the platform's)"
            )
        if col.name.lower() in seen:
            raise InvalidTable(f"column {col.name!r} is defined twice")
        seen.add(col.name.lower())
    return columns


def _is_date(value: str) -> bool:
    try:
        date.fromisoformat(value)
        return True
    except ValueError:
        pass
    try:
        datetime.fromisoformat(value)
        return True
    except ValueError:
        return False


def check_value(col: Column, value: Any) -> Any:
    """``value`` if it fits the column (None: an empty cell), else :class:`InvalidTable`."""
    if value is None:
        if col.required:
            raise InvalidTable(f"column {col.name!r} is required")
        return None
    if col.type == "text":
        ok = isinstance(value, str)
    elif col.type == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    elif col.type == "boolean":
        ok = isinstance(value, bool)
    elif col.type == "date":
        ok = isinstance(value, str) and len(value) <= 64 and _is_date(value)
    else:
        ok = True
    if not ok:
        what = {"date": "an ISO 8601 date or date-time string", "number": "a finite number"}
        raise InvalidTable(
            f"column {col.name!r} must be {what.get(col.type, 'a ' + col.type)}, got {_kind(value)}"
        )
    if col.type == "json":
        try:
            check_json(value, f"column {col.name!r}")
        except OutOfBounds as exc:
            raise InvalidTable(str(exc)) from None
    return value


def _kind(value: Any) -> str:
    return {bool: "a boolean", str: "a string", int: "a number", float: "a number", list: "an array"}.get(
        type(value), "an object" if isinstance(value, dict) else type(value).__name__
    )


def check_row(
    columns: list[Column], values: Any, *, partial: bool = False, index: int | None = None
) -> dict[str, Any]:
    """The row's values checked against the columns: every key is a column, each value fits its
    type, required columns are present (unless ``partial``: an update of some columns)."""
    where = f"row {index}: " if index is not None else ""
    if not isinstance(values, dict):
        raise InvalidTable(f"{where}a row must be a JSON object of column values")
    by_name = {c.name: c for c in columns}
    out: dict[str, Any] = {}
    try:
        for key, value in values.items():
            if key in ("id", "_meta"):
                continue  # the platform's own fields, as a read row carries them: ignored
            col = by_name.get(key)
            if col is None:
                known = ", ".join(by_name) or "none"
                raise InvalidTable(f"unknown column {key!r} (the table's columns: {known})")
            out[key] = check_value(col, value)
        if not partial:
            for col in columns:
                if col.required and out.get(col.name) is None:
                    raise InvalidTable(f"column {col.name!r} is required")
    except InvalidTable as exc:
        raise InvalidTable(f"{where}{exc}") from None
    if len(_enc.encode(out)) > MAX_ROW_BYTES:
        raise InvalidTable(f"{where}a row is larger than {MAX_ROW_BYTES} bytes")
    return out


def merge_row(stored: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """The row ``stored`` (its values; a read row's ``id`` and ``_meta`` are left out) with the
    checked ``changes`` of an update, as the read model will hold it: refused when it is larger
    than ``MAX_ROW_BYTES`` (checking only the changes would let a row grow past the limit one
    update at a time, into one that could not be written back as read). An update that does not
    make a row grown beyond the limit before this check was made any larger is taken."""
    before = {k: v for k, v in stored.items() if k not in ("id", "_meta")}
    merged = {**before, **changes}
    size = len(_enc.encode(merged))
    if size > MAX_ROW_BYTES and size > len(_enc.encode(before)):
        raise InvalidTable(f"the row would be larger than {MAX_ROW_BYTES} bytes")
    return merged


def stored_size(values: dict[str, Any]) -> int:
    """The bytes a row's values take as stored (their JSON, as the read model keeps it)."""
    return len(_enc.encode(values))


def check_room(rows: int, stored: int, more_rows: int, more_bytes: int) -> None:
    """A table of ``rows`` rows whose values take ``stored`` bytes may take ``more_rows`` rows and
    ``more_bytes`` bytes more (a write that adds neither is always taken), else :class:`TableFull`."""
    if more_rows > 0 and rows + more_rows > MAX_TABLE_ROWS:
        raise TableFull(f"a table holds at most {MAX_TABLE_ROWS:,} rows ({rows:,} now); delete some first")
    if more_bytes > 0 and stored + more_bytes > MAX_TABLE_BYTES:
        raise TableFull(
            f"a table's rows take at most {MAX_TABLE_BYTES:,} bytes ({stored:,} now, {more_bytes:,} more"
            " asked); delete some first"
        )


def far_from_full(rows: int, stored: int, more_rows: int, more_bytes: int) -> bool:
    """Whether a table of ``rows`` rows taking ``stored`` bytes stays within half its bound with
    ``more_rows`` and ``more_bytes`` more: such an insert needs no expected last event."""
    return rows + more_rows <= MAX_TABLE_ROWS // 2 and stored + more_bytes <= MAX_TABLE_BYTES // 2


def check_rows(columns: list[Column], rows: list[Any]) -> list[dict[str, Any]]:
    if not rows:
        raise InvalidTable("no rows given")
    if len(rows) > MAX_ROWS_PER_INSERT:
        raise InvalidTable(f"at most {MAX_ROWS_PER_INSERT} rows per insert")
    checked = [check_row(columns, row, index=i if len(rows) > 1 else None) for i, row in enumerate(rows)]
    if len(_enc.encode(checked)) > MAX_INSERT_BYTES:
        raise InvalidTable(
            f"the rows together are larger than {MAX_INSERT_BYTES} bytes; insert fewer at once"
        )
    return checked


class Filter(msgspec.Struct, frozen=True):
    column: str
    op: str
    value: Any = None
    type: str = "json"


class Sort(msgspec.Struct, frozen=True):
    key: str  # a column, or one of META_SORTS
    descending: bool = False
    meta: bool = False


def parse_filter(columns: list[Column], text: str) -> Filter:
    """``column:op:value`` (``op`` in :data:`FILTER_OPS`; ``is_null``/``not_null`` take no
    value); the value is read as the column's type (``score:gte:5`` compares numbers)."""
    name, _, rest = text.partition(":")
    op, _, raw = rest.partition(":")
    col = next((c for c in columns if c.name == name), None)
    if col is None:
        raise InvalidTable(f"filter {text!r}: unknown column {name!r}")
    if op not in FILTER_OPS:
        raise InvalidTable(f"filter {text!r}: unknown operator {op!r} (use {', '.join(FILTER_OPS)})")
    if op in ("is_null", "not_null"):
        return Filter(col.name, op, None, col.type)
    if op == "contains" and col.type not in ("text", "json"):
        raise InvalidTable(f"filter {text!r}: contains works on text columns")
    if op == "contains" and len(raw) > MAX_CONTAINS:
        raise InvalidTable(f"filter on {col.name!r}: contains looks for at most {MAX_CONTAINS} characters")
    return Filter(col.name, op, _filter_value(col, raw, text), col.type)


def _filter_value(col: Column, raw: str, text: str) -> Any:
    if col.type == "number":
        # json_extract reads a stored integer as SQLite's 64-bit integer, and an integer bound
        # here compares with it exactly; through a float, 2**53 + 1 would never match itself.
        if _INTEGER_RE.fullmatch(raw) and -(2**63) <= (whole := int(raw)) < 2**63:
            return whole
        try:
            value = float(raw)
        except ValueError:
            raise InvalidTable(f"filter {text!r}: {raw!r} is not a number") from None
        if not math.isfinite(value):
            raise InvalidTable(f"filter {text!r}: {raw!r} is not a finite number")
        # An integer as SQLite's (64 bits) when it is one; a float otherwise (1e30 stays 1e30).
        return int(value) if value.is_integer() and abs(value) < 2**63 else value
    if col.type == "boolean":
        if raw not in ("true", "false"):
            raise InvalidTable(f"filter {text!r}: use true or false")
        return raw == "true"
    return raw


def parse_query(
    columns: list[Column], filters: list[str], sorts: list[str]
) -> tuple[list[Filter], list[Sort]]:
    """A query's ``filters`` and ``sorts`` (see :func:`parse_filter`, :func:`parse_sort`), at most
    ``MAX_FILTERS`` and ``MAX_SORTS`` of them."""
    if len(filters) > MAX_FILTERS:
        raise InvalidTable(f"a query has at most {MAX_FILTERS} filters")
    if len(sorts) > MAX_SORTS:
        raise InvalidTable(f"a query has at most {MAX_SORTS} sort keys")
    return [parse_filter(columns, f) for f in filters], [parse_sort(columns, s) for s in sorts]


def parse_sort(columns: list[Column], text: str) -> Sort:
    """``column`` or ``-column`` (descending); also ``id`` and ``_meta.created_at|updated_at``."""
    descending = text.startswith("-")
    key = text[1:] if descending else text
    if key in META_SORTS:
        return Sort(META_SORTS[key], descending, meta=True)
    if not any(c.name == key for c in columns):
        raise InvalidTable(f"sort {text!r}: unknown column {key!r}")
    return Sort(key, descending)
