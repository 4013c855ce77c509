"""The project's tables, from inside a run (rows only: tables are defined over the API).

    from crewyard_runtime import tables

    tables.insert("leads", {"company": "Acme", "score": 7})           # or a list of at most 100
    top = tables.query("leads", filter=["score:gte:5"], sort=["-score"], limit=10)
    tables.update("leads", top[0]["id"], {"score": 8})
    tables.delete("leads", top[0]["id"])

A table is named by its name or id (``tbl_…``) and belongs to the run's project. Rows come back
as the API shows them: ``id``, the column values, ``_meta`` (``created_by`` is ``run:<run_id>``).
A refused request raises :class:`TableError` (``code``: invalid, not_found …; the message names
the column).
"""

from __future__ import annotations

from typing import Any

from . import _protocol


class TableError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


def _ask(op: str, args: dict[str, Any]) -> Any:
    if not _protocol.active():
        raise TableError("unavailable", "tables can be used only inside a crewyard run")
    try:
        return _protocol.request(op, args, timeout=300)
    except _protocol.RequestFailed as exc:
        raise TableError(exc.code, exc.message) from None


def list_tables() -> list[dict[str, Any]]:
    return list(_ask("table.list", {}))


def get(table: str) -> dict[str, Any]:
    """The table's definition: id, name, description, columns, row_count …"""
    return dict(_ask("table.get", {"table": table}))


def insert(table: str, rows: dict[str, Any] | list[dict[str, Any]]) -> Any:
    """Insert one row (returns it) or a list of at most 100 (returns them)."""
    many = isinstance(rows, list)
    stored = _ask("table.insert", {"table": table, "rows": rows if many else [rows]})
    return stored if many else stored[0]


def query(
    table: str,
    *,
    filter: list[str] | None = None,
    sort: list[str] | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Rows matching every ``filter`` (``column:op:value``; op: eq ne gt gte lt lte contains
    is_null not_null), in ``sort`` order (``column`` or ``-column``)."""
    return list(_page(table, filter, sort, limit, offset)["rows"])


def count(table: str, *, filter: list[str] | None = None) -> int:
    return int(_page(table, filter, None, 1, 0)["total"])


def _page(table: str, filters: list[str] | None, sort: list[str] | None, limit: int, offset: int) -> Any:
    args = {"table": table, "filter": filters or [], "sort": sort or [], "limit": limit, "offset": offset}
    return _ask("table.query", args)


def update(table: str, row_id: str, values: dict[str, Any]) -> dict[str, Any]:
    """Change some cells of a row (None empties one); returns the row."""
    return dict(_ask("table.update", {"table": table, "row_id": row_id, "values": values}))


def delete(table: str, row_id: str) -> None:
    _ask("table.delete", {"table": table, "row_id": row_id})
