"""Table events: a project's structured data. The table aggregate holds its definition and its
rows (rows are written without an expected sequence: inserts never conflict, and the last write
to a cell wins, as in any table store).

``by`` says who wrote: ``api`` or ``api:<key name>`` for the HTTP API, ``run:<run_id>`` for a
crew during a run.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..tables import Column
from ._base import Payload


class TableCreated(Payload, frozen=True, kw_only=True):
    TYPE = "table.created"
    AGGREGATE = "table"
    name: str
    columns: list[Column]
    description: str | None = None
    by: str = "api"


class TableUpdated(Payload, frozen=True, kw_only=True):
    """The table's definition after the change, whole (``columns`` replace the old ones; rows
    already stored are not rewritten)."""

    TYPE = "table.updated"
    AGGREGATE = "table"
    name: str
    columns: list[Column]
    description: str | None = None
    by: str = "api"


class TableDeleted(Payload, frozen=True, kw_only=True):
    TYPE = "table.deleted"
    AGGREGATE = "table"
    by: str = "api"


class NewRow(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    values: dict[str, Any]


class RowsInserted(Payload, frozen=True, kw_only=True):
    TYPE = "table.rows_inserted"
    AGGREGATE = "table"
    rows: list[NewRow]
    by: str = "api"
    #: The ``Idempotency-Key`` of the API request that inserted them (a repeat answers with
    #: these rows), and the hash of its body.
    idempotency_key: str | None = None
    request_hash: str | None = None


class RowUpdated(Payload, frozen=True, kw_only=True):
    """Some cells of one row (``None`` empties a cell)."""

    TYPE = "table.row_updated"
    AGGREGATE = "table"
    row_id: str
    values: dict[str, Any]
    by: str = "api"


class RowDeleted(Payload, frozen=True, kw_only=True):
    TYPE = "table.row_deleted"
    AGGREGATE = "table"
    row_id: str
    by: str = "api"


TABLE_EVENTS: tuple[type[Payload], ...] = (
    TableCreated,
    TableUpdated,
    TableDeleted,
    RowsInserted,
    RowUpdated,
    RowDeleted,
)
