"""Tables and their rows in the read model: the schema, how each ``table.*`` event changes it, and
the queries (filters, sort, pages) that the API and crews ask.

The apply functions live here rather than with the projector's other handlers because two
readers fold the same events: the projector into the read model's file, and a runner into a
small in-memory model of the tables its crews use (a runner has no read model, and a crew's
query must mean what the same query means over the API). One implementation, one meaning.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import aiosqlite
import msgspec

from crewyard.core.events import (
    Event,
    RowDeleted,
    RowsInserted,
    RowUpdated,
    TableCreated,
    TableDeleted,
    TableUpdated,
)
from crewyard.core.tables import Column, Filter, Sort

from ._base import Reader

TABLES = ("tables", "table_rows", "table_row_keys")


class TableSize(NamedTuple):
    rows: int
    stored: int  # bytes of the rows' values, as stored
    position: int  # the stream sequence of the table's last event applied


DDL = """
CREATE TABLE IF NOT EXISTS tables (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT,
    columns TEXT NOT NULL,
    row_count INTEGER NOT NULL DEFAULT 0,
    data_bytes INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    last_seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS tables_project ON tables (project, deleted, name);

CREATE TABLE IF NOT EXISTS table_rows (
    table_id TEXT NOT NULL,
    id TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (table_id, id)
);

CREATE TABLE IF NOT EXISTS table_row_keys (
    table_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_hash TEXT,
    seq INTEGER NOT NULL,
    PRIMARY KEY (table_id, idempotency_key)
);
"""

Handler = Callable[[aiosqlite.Connection, int, Event], Awaitable[None]]
_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder()


def _ts(e: Event) -> str:
    return e.time.isoformat()


def _columns(columns: list[Column]) -> str:
    return _enc.encode(columns).decode()


async def _live(db: aiosqlite.Connection, table_id: str, project: str) -> bool:
    async with db.execute(
        "SELECT 1 FROM tables WHERE id = ? AND project = ? AND deleted = 0", (table_id, project)
    ) as cur:
        return await cur.fetchone() is not None


async def _touch(db: aiosqlite.Connection, seq: int, e: Event, added: int = 0, grown: int = 0) -> None:
    """The table's position, its row count moved by the rows the event really added (less those
    it removed), and the bytes of its rows' values by what they really grew. Counted from what
    each statement changed, not recounted: a recount reads every row of the table, and the
    projector applies all projects' events one at a time. The statements skip what is there
    already (a repeated insert, a delete of a row that is gone), so an event applied twice moves
    the counts once."""
    await db.execute(
        "UPDATE tables SET last_seq = ?, row_count = row_count + ?, data_bytes = data_bytes + ?"
        " WHERE id = ? AND project = ?",
        (seq, added, grown, e.aggregate_id, e.project),
    )


async def table_created(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    d = e.data
    assert isinstance(d, TableCreated)
    await db.execute(
        "INSERT OR IGNORE INTO tables (id, project, name, description, columns, created_at, created_by,"
        " updated_at, last_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            e.aggregate_id,
            e.project,
            d.name,
            d.description,
            _enc.encode(d.columns).decode(),
            _ts(e),
            d.by,
            _ts(e),
            seq,
        ),
    )


async def table_updated(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    d = e.data
    assert isinstance(d, TableUpdated)
    await db.execute(
        "UPDATE tables SET name = ?, description = ?, columns = ?, updated_at = ?, last_seq = ?"
        " WHERE id = ? AND project = ? AND deleted = 0",
        (d.name, d.description, _columns(d.columns), _ts(e), seq, e.aggregate_id, e.project),
    )


async def table_deleted(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    if not await _live(db, e.aggregate_id, e.project):
        return
    await db.execute("DELETE FROM table_rows WHERE table_id = ?", (e.aggregate_id,))
    await db.execute("DELETE FROM table_row_keys WHERE table_id = ?", (e.aggregate_id,))
    await db.execute(
        "UPDATE tables SET deleted = 1, row_count = 0, data_bytes = 0, updated_at = ?, last_seq = ?"
        " WHERE id = ? AND project = ?",
        (_ts(e), seq, e.aggregate_id, e.project),
    )


async def rows_inserted(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    d = e.data
    assert isinstance(d, RowsInserted)
    if not await _live(db, e.aggregate_id, e.project):
        return  # written as its table was being deleted: gone with it
    # A statement per 500 rows (SQLite's bound on parameters), so that RETURNING says which rows
    # it really inserted (a repeated event's are ignored) and how many bytes they take.
    sizes: list[int] = []
    for at in range(0, len(d.rows), 500):
        part = d.rows[at : at + 500]
        values = [
            v
            for r in part
            for v in (e.aggregate_id, r.id, _enc.encode(r.values).decode(), _ts(e), d.by, _ts(e), d.by)
        ]
        inserted = await db.execute_fetchall(
            "INSERT OR IGNORE INTO table_rows (table_id, id, data, created_at, created_by, updated_at,"
            f" updated_by) VALUES {', '.join(['(?, ?, ?, ?, ?, ?, ?)'] * len(part))}"
            " RETURNING length(CAST(data AS BLOB))",
            values,
        )
        sizes += [_first(r) for r in inserted]
    if d.idempotency_key is not None:  # the first insert with a key is the one a repeat answers with
        await db.execute(
            "INSERT OR IGNORE INTO table_row_keys (table_id, idempotency_key, request_hash, seq)"
            " VALUES (?, ?, ?, ?)",
            (e.aggregate_id, d.idempotency_key, d.request_hash, seq),
        )
    await _touch(db, seq, e, len(sizes), sum(sizes))


def _first(row: Any) -> Any:
    """A row's first column, whichever row factory the connection has (a dict or a tuple)."""
    return next(iter(row.values())) if isinstance(row, dict) else row[0]


async def row_updated(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    d = e.data
    assert isinstance(d, RowUpdated)
    if not await _live(db, e.aggregate_id, e.project):
        return
    async with db.execute(
        "SELECT data FROM table_rows WHERE table_id = ? AND id = ?", (e.aggregate_id, d.row_id)
    ) as cur:
        row = await cur.fetchone()
    if row is None:
        return  # deleted meanwhile: the last write to a row that is gone changes nothing
    before = _first(row).encode()
    data = _dec.decode(before)
    data.update(d.values)
    after = _enc.encode(data)
    await db.execute(
        "UPDATE table_rows SET data = ?, updated_at = ?, updated_by = ? WHERE table_id = ? AND id = ?",
        (after.decode(), _ts(e), d.by, e.aggregate_id, d.row_id),
    )
    await _touch(db, seq, e, grown=len(after) - len(before))


async def row_deleted(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    d = e.data
    assert isinstance(d, RowDeleted)
    if not await _live(db, e.aggregate_id, e.project):
        return
    gone = await db.execute_fetchall(
        "DELETE FROM table_rows WHERE table_id = ? AND id = ? RETURNING length(CAST(data AS BLOB))",
        (e.aggregate_id, d.row_id),
    )
    sizes = [_first(r) for r in gone]
    await _touch(db, seq, e, -len(sizes), -sum(sizes))


TABLE_HANDLERS: dict[str, Handler] = {
    TableCreated.TYPE: table_created,
    TableUpdated.TYPE: table_updated,
    TableDeleted.TYPE: table_deleted,
    RowsInserted.TYPE: rows_inserted,
    RowUpdated.TYPE: row_updated,
    RowDeleted.TYPE: row_deleted,
}


def table_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "project": row["project"],
        "name": row["name"],
        "description": row["description"],
        "columns": _dec.decode(row["columns"]),
        "row_count": row["row_count"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


#: A row as the API shows it (``{"id", <its values>, "_meta"}``), as SQL: the stored values' JSON
#: text as it is between the row's id and its ``_meta``, never decoded only to be encoded again (a
#: JSON cell of ``[{}, {}, ...]`` decodes to some 24 times its size). ``data`` is always an object
#: msgspec wrote (no spaces; ``{}`` when empty). Values named ``id`` or ``_meta`` (the core
#: refuses them) would come before the row's own, which decoders take (the last one wins).
ROW_JSON = (
    "'{\"id\":' || json_quote(id)"
    " || CASE WHEN data = '{}' THEN '' ELSE ',' || substr(data, 2, length(data) - 2) END"
    " || ',\"_meta\":' || json_object('created_at', created_at, 'created_by', created_by,"
    " 'updated_at', updated_at, 'updated_by', updated_by) || '}'"
)

#: A page of rows ends once this much of their JSON was read (at least one row; the next page
#: starts at ``offset`` plus the rows shown): 500 rows of 64 KiB would otherwise be 32 MiB.
ROWS_PAGE_BYTES = 4 << 20


_OPS = {"eq": "=", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def _where(filters: list[Filter]) -> tuple[list[str], list[Any]]:
    """SQL conditions for the filters. Column names reach SQL only as bound JSON paths, and only
    after :func:`crewyard.core.tables.parse_filter` matched them against the table's columns."""
    sql: list[str] = []
    args: list[Any] = []
    for f in filters:
        cell = "json_extract(data, ?)"
        path = f'$."{f.column}"'
        if f.op == "is_null":
            sql.append(f"{cell} IS NULL")
            args.append(path)
        elif f.op == "not_null":
            sql.append(f"{cell} IS NOT NULL")
            args.append(path)
        elif f.op == "contains":
            sql.append(f"instr(lower(CAST({cell} AS TEXT)), lower(?)) > 0")
            args.extend([path, f.value])
        else:
            value = int(f.value) if isinstance(f.value, bool) else f.value  # json true reads as 1
            # ne keeps empty cells out, as in SQL: "not 5" means "has a value, and it is not 5".
            sql.append(f"{cell} {_OPS[f.op]} ?")
            args.extend([path, value])
    return sql, args


class TableQueries(Reader):
    async def table(self, table_id: str) -> dict[str, Any] | None:
        row = await self._one("SELECT * FROM tables WHERE id = ? AND deleted = 0", (table_id,))
        return table_view(row) if row else None

    async def table_by_name(self, project: str, name: str) -> dict[str, Any] | None:
        """The project's live table of that name (the oldest, should two have been made at once)."""
        row = await self._one(
            "SELECT * FROM tables WHERE project = ? AND name = ? AND deleted = 0 ORDER BY id LIMIT 1",
            (project, name),
        )
        return table_view(row) if row else None

    async def tables(self, project: str) -> list[dict[str, Any]]:
        rows = await self._all(
            "SELECT * FROM tables WHERE project = ? AND deleted = 0 ORDER BY name, id", (project,)
        )
        return [table_view(r) for r in rows]

    async def table_size(self, table_id: str) -> TableSize:
        """The table's rows, the bytes their values take as stored, and the stream sequence of
        its last event applied here (all 0: no such table)."""
        row = await self._key("SELECT row_count, data_bytes, last_seq FROM tables WHERE id = ?", (table_id,))
        if row is None:
            return TableSize(0, 0, 0)
        return TableSize(int(row["row_count"]), int(row["data_bytes"]), int(row["last_seq"]))

    async def rows_by_idempotency_key(self, table_id: str, key: str) -> tuple[int, str | None] | None:
        """The event (its sequence) that inserted rows into the table with this key, and the hash
        of the request that did."""
        row = await self._one(
            "SELECT seq, request_hash FROM table_row_keys WHERE table_id = ? AND idempotency_key = ?",
            (table_id, key),
        )
        return (row["seq"], row["request_hash"]) if row else None

    async def row(self, table_id: str, row_id: str) -> dict[str, Any] | None:
        """A row as the API shows it, decoded (to be changed: a row update merges into it)."""
        row = await self.row_json(table_id, row_id)
        return _dec.decode(row) if row is not None else None

    async def row_json(self, table_id: str, row_id: str) -> bytes | None:
        """A row as the API shows it, as JSON (``ROW_JSON``)."""
        row = await self._key(
            f"SELECT CAST({ROW_JSON} AS BLOB) AS j FROM table_rows WHERE table_id = ? AND id = ?",
            (table_id, row_id),
        )
        return row["j"] if row else None

    async def rows(
        self, table_id: str, *, filters: list[Filter], sort: list[Sort], limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of rows (see :meth:`rows_json`, without a byte bound), decoded."""
        rows, total = await self.rows_json(
            table_id, filters=filters, sort=sort, limit=limit, offset=offset, budget=None
        )
        return [_dec.decode(r) for r in rows], total

    async def rows_json(
        self,
        table_id: str,
        *,
        filters: list[Filter],
        sort: list[Sort],
        limit: int,
        offset: int,
        budget: int | None = ROWS_PAGE_BYTES,
    ) -> tuple[list[bytes], int]:
        """A page of rows matching every filter, in ``sort`` order (then by id), each as its JSON
        (``ROW_JSON``), and how many rows match in all. The page ends once ``budget`` bytes of
        rows were read (at least one row), so it may hold fewer than ``limit``.

        The page's rows are chosen by their keys alone, then read: sorted with their values, each
        row of the ``offset`` skipped would be carried through SQLite's sorter whole."""
        conds, args = _where(filters)
        where = " AND ".join(["table_id = ?", *conds])
        order, order_args = [], []
        for s in sort:
            key = s.key if s.meta else "json_extract(data, ?)"
            if not s.meta:
                order_args.append(f'$."{s.key}"')
            order.append(f"{key} {'DESC' if s.descending else 'ASC'}")
        order.append("id ASC")
        total = await self._one(f"SELECT COUNT(*) AS n FROM table_rows WHERE {where}", (table_id, *args))
        # CROSS JOIN: the page's keys are the outer loop, so the rows come in the page's order.
        sql = (
            f"SELECT CAST({ROW_JSON} AS BLOB) AS j FROM (SELECT rowid AS k FROM table_rows WHERE {where}"
            f" ORDER BY {', '.join(order)} LIMIT ? OFFSET ?) AS page"
            " CROSS JOIN table_rows ON table_rows.rowid = page.k"
        )
        page_args = (table_id, *args, *order_args, limit, offset)
        shown, _ = await self._page_within(sql, page_args, limit, 2**62 if budget is None else budget)
        return [r["j"] for r in shown], int(total["n"]) if total else 0
