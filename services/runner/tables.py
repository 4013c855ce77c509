"""A run's tables: the ``table.*`` operations a crew asks through the runtime protocol.

A runner has no read model, so each run that uses tables folds the events of the tables it
touches into a small SQLite database in memory, with the read side's own apply functions and
queries (``crewyard.readmodel``): a crew's query means exactly what the same query means over
the API. Before every answer the table is caught up from the stream (its events after the last
one applied, a batch at a time), so a crew reads its own writes and everyone else's.

What a run holds of a table is bounded by the table's own bound (``core.MAX_TABLE_ROWS`` rows,
``core.MAX_TABLE_BYTES`` of values), which every write is checked against here as at the API: on
the table as of its last event, appended expecting that event (a write in between makes it look
again), so writers on any number of runners and gateways cannot pass it together. The fold's
time follows the table's history (every write since it was made), not only its rows.

Only tables of the run's project exist for it; a crew may read and write rows (the run role),
never change a table's definition.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiosqlite
import msgspec

from crewyard.backoff import Backoff
from crewyard.core import tables as core
from crewyard.core.events import (
    InvalidEvent,
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
from crewyard.eventstore import ConcurrencyConflict, EventStore, set_aside
from crewyard.readmodel import TABLE_DDL, TABLE_HANDLERS, TableQueries

MAX_PAGE = 500
#: Events folded at a time: what a catch-up holds besides the table (each at most a 512 KiB insert).
FOLD_BATCH = 100
#: The longest arguments (JSON text) a table operation takes: twice the most it stores or compares
#: (an insert's rows, ``MAX_INSERT_BYTES``; a query's filters, each up to a row's size), for the
#: spaces and escapes of a runtime's JSON. Longer ones are refused before they are decoded.
MAX_ARGS_BYTES = 2 * max(core.MAX_INSERT_BYTES, core.MAX_FILTERS * core.MAX_ROW_BYTES)
#: As the API's (an offset SQLite can take).
MAX_OFFSET = 2**62


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


async def _memory_model() -> tuple[aiosqlite.Connection, TableQueries]:
    db = await aiosqlite.connect(":memory:", isolation_level=None)
    await db.executescript(TABLE_DDL)
    return db, TableQueries(db)


class OpError(Exception):
    """An operation refused: ``code`` (invalid, not_found, …) and a message for the crew."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class RunTables:
    def __init__(self, store: EventStore, project: str, run_id: str) -> None:
        self.store, self.project, self.by = store, project, f"run:{run_id}"
        self._db: aiosqlite.Connection | None = None
        self._reader: TableQueries | None = None
        self._positions: dict[str, int] = {}
        self._lock = asyncio.Lock()
        self._names: dict[str, str] = {}  # a table's name → its id, as found
        self._listed: dict[str, tuple[int, dict[str, Any] | None]] = {}  # (as of, view)

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def _model(self) -> TableQueries:
        if self._reader is None:
            self._db, self._reader = await _memory_model()
        return self._reader

    async def _catch_up(self, table_id: str) -> dict[str, Any]:
        reader = await self._model()
        await self._fold(reader, table_id, self._positions)
        view = await reader.table(table_id)
        if view is None:
            raise OpError("not_found", f"table {table_id} not found in project {self.project}")
        return view

    async def _fold(self, reader: TableQueries, table_id: str, positions: dict[str, int]) -> None:
        """Apply the table's events after ``positions[table_id]`` to ``reader``'s database."""
        start = positions.get(table_id, 0) + 1
        filt = f"{self.store.prefix}.{self.project}.table.{table_id}.>"
        async for batch in self.store.raw_batches(filt, start_seq=start, batch=FOLD_BATCH):
            for raw in batch:
                positions[table_id] = raw.seq
                try:
                    rec = raw.decode(self.store.prefix)
                except InvalidEvent as exc:
                    set_aside("run tables", raw.seq, raw.subject, exc)
                    continue
                handler = TABLE_HANDLERS.get(rec.event.type)
                if handler is not None:
                    await handler(reader.db, rec.seq, rec.event)

    async def _resolve(self, ref: Any) -> str:
        """A table of the project by id or by name (the oldest live one of that name)."""
        if not isinstance(ref, str) or not ref or len(ref) > 128:
            raise OpError("invalid", "table must be a table id (tbl_…) or name")
        if is_id(ref, "tbl"):
            return ref
        names: dict[str, str] = {}
        gone: set[str] = set()
        for kind in (TableCreated, TableUpdated, TableDeleted):
            for raw in await self.store.load_raw(f"{self.store.prefix}.{self.project}.table.*.{kind.TYPE}"):
                try:
                    rec = raw.decode(self.store.prefix)
                except InvalidEvent:
                    continue
                data, table_id = rec.event.data, rec.event.aggregate_id
                if isinstance(data, TableDeleted):
                    gone.add(table_id)
                elif isinstance(data, TableCreated | TableUpdated):  # updates come after creation
                    names[table_id] = data.name
        matches = sorted(t for t, name in names.items() if name == ref and t not in gone)
        if not matches:
            raise OpError("not_found", f"no table called {ref!r} in project {self.project}")
        return matches[0]

    async def _table(self, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The table a request names, caught up. A name found once is kept for the run (finding it
        reads every definition event of the project) while its table is live and keeps it."""
        ref = args.get("table")
        known = self._names.get(ref) if isinstance(ref, str) else None
        if known is not None and isinstance(ref, str):
            with contextlib.suppress(OpError):  # deleted meanwhile: look for the name again
                view = await self._catch_up(known)
                if view["name"] == ref:
                    return known, view
            del self._names[ref]
        table_id = await self._resolve(ref)
        if isinstance(ref, str) and ref != table_id:
            self._names[ref] = table_id
        return table_id, await self._catch_up(table_id)

    async def _append(self, table_id: str, payload: Payload, expected: int | None = None) -> None:
        """Append ``payload`` to the table (expecting its event ``expected``, unless None)."""
        event = make_event(payload, project=self.project, aggregate_id=table_id, event_id=new_id("evt"))
        try:
            await self.store.append(event, expected_seq=expected)
        except InvalidEvent as exc:
            raise OpError("invalid", str(exc)) from None

    async def _update(self, table_id: str, row_id: str, changes: Any) -> dict[str, Any] | None:
        """Update a row decided on the table as of its last event (caught up from the stream) and
        appended expecting that event: the row is checked whole (``core.merge_row``), as it will
        be stored, and a write in between makes it look again."""
        reader = await self._model()
        turns = Backoff(15, first=0.02, most=0.5, jitter=True)  # as the API's row changes
        while not turns.expired:
            view = await self._catch_up(table_id)
            stored = await reader.row(table_id, row_id)
            if stored is None:
                raise OpError("not_found", f"row {row_id!r} of table {table_id} not found")
            values = core.check_row(
                msgspec.convert(view["columns"], list[core.Column]), changes, partial=True
            )
            merged = core.merge_row(stored, values)
            before = {k: v for k, v in stored.items() if k not in ("id", "_meta")}
            grown = core.stored_size(merged) - core.stored_size(before)
            now = await reader.table_size(table_id)
            core.check_room(now.rows, now.stored, 0, grown)
            expected = self._positions.get(table_id, 0)
            try:
                await self._append(table_id, RowUpdated(row_id=row_id, values=values, by=self.by), expected)
            except ConcurrencyConflict:
                await turns.pause()
                continue
            await self._catch_up(table_id)
            return await reader.row(table_id, row_id)
        raise OpError("unavailable", f"table {table_id} kept changing; try again")

    async def _insert(self, table_id: str, checked: list[dict[str, Any]]) -> list[dict[str, Any] | None]:
        """Insert rows if the table (caught up from the stream) has room for them; near its
        bound (``core.far_from_full``), appended expecting the table's last event: a write in
        between makes it count again."""
        reader = await self._model()
        new = [NewRow(id=new_id("row"), values=values) for values in checked]
        size = sum(map(core.stored_size, checked))
        turns = Backoff(15, first=0.02, most=0.5, jitter=True)  # as the API's inserts
        while not turns.expired:
            await self._catch_up(table_id)
            now = await reader.table_size(table_id)
            core.check_room(now.rows, now.stored, len(new), size)
            near = not core.far_from_full(now.rows, now.stored, len(new), size)
            expected = self._positions.get(table_id, 0) if near else None
            try:
                await self._append(table_id, RowsInserted(rows=new, by=self.by), expected)
            except ConcurrencyConflict:
                await turns.pause()
                continue
            await self._catch_up(table_id)
            return [await reader.row(table_id, r.id) for r in new]
        raise OpError("unavailable", f"table {table_id} kept changing; try again")

    async def handle(self, op: str, args: dict[str, Any]) -> Any:
        async with self._lock:
            try:
                return await self._handle(op, args)
            except core.InvalidTable as exc:
                raise OpError("invalid", str(exc)) from None
            except core.TableFull as exc:
                raise OpError("limit_reached", str(exc)) from None

    async def _handle(self, op: str, args: dict[str, Any]) -> Any:
        if op == "table.list":
            return await self._list()
        table_id, view = await self._table(args)
        columns = msgspec.convert(view["columns"], list[core.Column])
        if op == "table.get":
            return view
        if op == "table.insert":
            rows = args.get("rows")
            checked = core.check_rows(columns, rows if isinstance(rows, list) else [])
            return await self._insert(table_id, checked)
        if op == "table.query":
            return await self._query(table_id, columns, args)
        row_id = args.get("row_id")
        reader = await self._model()
        if not isinstance(row_id, str) or await reader.row(table_id, row_id) is None:
            raise OpError("not_found", f"row {row_id!r} of table {table_id} not found")
        if op == "table.update":
            return await self._update(table_id, row_id, args.get("values"))
        if op == "table.delete":
            await self._append(table_id, RowDeleted(row_id=row_id, by=self.by))
            return {"id": row_id, "deleted": True}
        raise OpError("unknown_op", f"this platform has no operation {op!r}")

    async def _query(self, table_id: str, columns: list[core.Column], args: dict[str, Any]) -> Any:
        filters, sorts = args.get("filter") or [], args.get("sort") or []
        if not isinstance(filters, list) or not isinstance(sorts, list):
            raise OpError("invalid", "filter and sort must be lists of strings")
        if not all(isinstance(x, str) for x in [*filters, *sorts]):
            raise OpError("invalid", "filter and sort must be lists of strings")
        limit, offset = args.get("limit", 50), args.get("offset", 0)
        # The API's bounds; a JSON true is not a number (bool is an int in Python).
        if not _whole(limit) or not 1 <= limit <= MAX_PAGE:
            raise OpError("invalid", f"limit must be a whole number from 1 to {MAX_PAGE}")
        if not _whole(offset) or not 0 <= offset <= MAX_OFFSET:
            raise OpError("invalid", f"offset must be a whole number from 0 to {MAX_OFFSET}")
        parsed, order = core.parse_query(columns, filters, sorts)
        reader = await self._model()
        rows, total = await reader.rows(
            table_id,
            filters=parsed,
            sort=order,
            limit=limit,
            offset=offset,
        )
        return {"rows": rows, "total": total}

    async def _list(self) -> list[dict[str, Any]]:
        """The project's live tables. One the run does not hold already is folded apart and let
        go (a project's tables, up to 64 MiB of rows each, are never all held at once)."""
        ids = set()
        for raw in await self.store.load_raw(f"{self.store.prefix}.{self.project}.table.*.table.created"):
            ids.add(raw.subject.split(".")[-3])
        out = []
        for table_id in sorted(ids):
            if table_id in self._positions:
                with contextlib.suppress(OpError):  # deleted
                    out.append(await self._catch_up(table_id))
                continue
            view = await self._apart(table_id)
            if view is not None:
                out.append(view)
        return out

    async def _apart(self, table_id: str) -> dict[str, Any] | None:
        """A table the run does not hold, folded into a database of its own and let go; its view
        is kept until the table changes (a crew listing its tables in a loop folded every one of
        them each time)."""
        last = await self.store.last_seq_of(f"{self.store.prefix}.{self.project}.table.{table_id}.>") or 0
        listed = self._listed.get(table_id)
        if listed is not None and listed[0] == last:
            return listed[1]
        db, reader = await _memory_model()
        try:
            positions: dict[str, int] = {}
            await self._fold(reader, table_id, positions)
            view = await reader.table(table_id)
        finally:
            await db.close()
        self._listed[table_id] = (positions.get(table_id, 0), view)
        return view
