"""A crew's ``table.*`` operations (``crewyard.runner.tables``) against a real event store: a row
cannot grow past the row limit one update at a time, a query's page is bounded as the API's, and
a table cannot grow past its own bound on rows and bytes, not even by writers racing on two
runners; a run folds a table's history a batch at a time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from crewyard.core import tables as core
from crewyard.core.events import TableCreated, TableDeleted, TableUpdated, make_event
from crewyard.core.ids import new_id
from crewyard.core.tables import MAX_ROW_BYTES, Column
from crewyard.eventstore import EventStore
from crewyard.runner import tables as run_tables
from crewyard.runner.tables import MAX_OFFSET, OpError, RunTables

BIG = "x" * 60_000


@pytest.fixture
async def four_json_columns(store: EventStore) -> AsyncIterator[tuple[RunTables, str]]:
    table_id = new_id("tbl")
    columns = [Column(name=n, type="json") for n in "abcd"]
    created = TableCreated(name="grow", columns=columns, by="api")
    await store.append(make_event(created, project="shop", aggregate_id=table_id, event_id=new_id("evt")))
    tables = RunTables(store, "shop", new_id("run"))
    yield tables, table_id
    await tables.close()


async def _refused(tables: RunTables, op: str, args: dict[str, object], code: str = "invalid") -> str:
    with pytest.raises(OpError) as caught:
        await tables.handle(op, args)
    assert caught.value.code == code, caught.value
    return str(caught.value)


async def test_a_row_cannot_grow_past_the_limit_by_updates(four_json_columns: tuple[RunTables, str]) -> None:
    tables, table_id = four_json_columns
    [row] = await tables.handle("table.insert", {"table": table_id, "rows": [{"a": BIG}]})
    message = await _refused(
        tables, "table.update", {"table": table_id, "row_id": row["id"], "values": {"b": BIG}}
    )
    assert str(MAX_ROW_BYTES) in message
    # A change that keeps the row within the limit is taken; the row is as it was otherwise.
    done = await tables.handle("table.update", {"table": table_id, "row_id": row["id"], "values": {"b": 1}})
    assert done["a"] == BIG and done["b"] == 1


async def test_a_query_page_is_bounded_as_the_apis(four_json_columns: tuple[RunTables, str]) -> None:
    tables, table_id = four_json_columns
    await _refused(tables, "table.query", {"table": table_id, "offset": 2**63})
    await _refused(tables, "table.query", {"table": table_id, "offset": MAX_OFFSET + 1})
    await _refused(tables, "table.query", {"table": table_id, "limit": True})
    await _refused(tables, "table.query", {"table": table_id, "offset": False})
    page = await tables.handle("table.query", {"table": table_id, "offset": MAX_OFFSET, "limit": 1})
    assert page == {"rows": [], "total": 0}


@pytest.fixture
def small_table_bound(monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """Tables of at most 3 rows whose values take at most 150 KB (the core's bound, made small)."""
    monkeypatch.setattr(core, "MAX_TABLE_ROWS", 3)
    monkeypatch.setattr(core, "MAX_TABLE_BYTES", 150_000)
    return 3, 150_000


async def test_a_table_cannot_grow_past_its_bound_on_rows_or_bytes(
    four_json_columns: tuple[RunTables, str], small_table_bound: tuple[int, int]
) -> None:
    tables, table_id = four_json_columns
    rows = await tables.handle("table.insert", {"table": table_id, "rows": [{"a": 1}, {"a": 2}]})
    message = await _refused(
        tables, "table.insert", {"table": table_id, "rows": [{"a": 3}, {"a": 4}]}, "limit_reached"
    )
    assert "3 rows" in message
    [third] = await tables.handle("table.insert", {"table": table_id, "rows": [{"a": BIG}]})
    await _refused(tables, "table.insert", {"table": table_id, "rows": [{"a": 5}]}, "limit_reached")
    # Bytes: the rows' values may grow by updates only within the bound (shrinking is always taken).
    grow = {"table": table_id, "row_id": rows[0]["id"], "values": {"b": BIG}}
    await tables.handle("table.update", grow)
    grow = {"table": table_id, "row_id": rows[1]["id"], "values": {"b": BIG}}
    assert "bytes" in await _refused(tables, "table.update", grow, "limit_reached")
    await tables.handle("table.update", {"table": table_id, "row_id": third["id"], "values": {"a": 0}})
    # A deleted row makes room again.
    await tables.handle("table.delete", {"table": table_id, "row_id": rows[1]["id"]})
    assert len(await tables.handle("table.insert", {"table": table_id, "rows": [{"a": 6}]})) == 1
    page = await tables.handle("table.query", {"table": table_id})
    assert page["total"] == 3


async def test_inserts_racing_on_two_runners_cannot_pass_the_bound_together(
    four_json_columns: tuple[RunTables, str], store: EventStore, small_table_bound: tuple[int, int]
) -> None:
    tables, table_id = four_json_columns
    other = RunTables(store, "shop", new_id("run"))
    try:
        for runner in (tables, other):  # both have folded the empty table: each sees room
            assert (await runner.handle("table.get", {"table": table_id}))["row_count"] == 0
        both = await asyncio.gather(
            *(
                r.handle("table.insert", {"table": table_id, "rows": [{"a": 1}, {"a": 2}]})
                for r in (tables, other)
            ),
            return_exceptions=True,
        )
        refused = [b for b in both if isinstance(b, OpError)]
        assert len(refused) == 1 and refused[0].code == "limit_reached", both
        assert (await other.handle("table.get", {"table": table_id}))["row_count"] == 2
    finally:
        await other.close()


async def test_a_run_folds_a_tables_history_a_batch_at_a_time(
    four_json_columns: tuple[RunTables, str], store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    tables, table_id = four_json_columns
    for i in range(7):
        await tables.handle("table.insert", {"table": table_id, "rows": [{"a": i}]})
    monkeypatch.setattr(run_tables, "FOLD_BATCH", 3)
    held: list[int] = []
    batches = store.raw_batches

    def counted(*args: object, **kwargs: object) -> object:
        async def each() -> object:
            async for batch in batches(*args, **kwargs):  # type: ignore[arg-type]
                held.append(len(batch))
                yield batch

        return each()

    monkeypatch.setattr(store, "raw_batches", counted)
    later = RunTables(store, "shop", new_id("run"))
    try:
        assert (await later.handle("table.get", {"table": table_id}))["row_count"] == 7
    finally:
        await later.close()
    assert sum(held) == 8 and max(held) == 3  # the definition and seven inserts, three at most at once


async def test_listing_the_tables_holds_none_of_their_rows(store: EventStore) -> None:
    """``table.list`` shows every live table with its row count, folding each apart: the run's
    own model holds only the tables it used (a project's tables may take 64 MiB of rows each)."""
    ids = []
    for name in ("a", "b", "gone"):
        ids.append(new_id("tbl"))
        created = TableCreated(name=name, columns=[Column(name="x", type="text")], by="api")
        await store.append(make_event(created, project="list", aggregate_id=ids[-1], event_id=new_id("evt")))
    writer = RunTables(store, "list", new_id("run"))
    try:
        await writer.handle("table.insert", {"table": "a", "rows": [{"x": "1"}, {"x": "2"}]})
        await writer.handle("table.insert", {"table": "gone", "rows": [{"x": "3"}]})
    finally:
        await writer.close()
    deleted = TableDeleted(by="api")
    await store.append(make_event(deleted, project="list", aggregate_id=ids[2], event_id=new_id("evt")))

    tables = RunTables(store, "list", new_id("run"))
    try:
        await tables.handle("table.get", {"table": "b"})  # one the run uses: held, and listed too
        listed = await tables.handle("table.list", {})
        held = await tables._db.execute_fetchall("SELECT DISTINCT table_id FROM table_rows")  # type: ignore[union-attr]
    finally:
        await tables.close()
    # (listed by id, and ids made within one millisecond are in no particular order)
    assert sorted((t["name"], t["row_count"]) for t in listed) == [("a", 2), ("b", 0)]
    assert list(held) == [] and set(tables._positions) == {ids[1]}


async def test_a_name_is_looked_up_once_while_its_table_keeps_it(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding a table by name reads every definition event of the project: a run does it once
    per name, and again only once the table is gone or renamed."""
    first = new_id("tbl")
    created = TableCreated(name="notes", columns=[Column(name="x", type="text")], by="api")
    await store.append(make_event(created, project="names", aggregate_id=first, event_id=new_id("evt")))
    tables = RunTables(store, "names", new_id("run"))
    lookups = 0
    real = RunTables._resolve

    async def counted(self: RunTables, ref: object) -> str:
        nonlocal lookups
        lookups += 1
        return await real(self, ref)

    monkeypatch.setattr(RunTables, "_resolve", counted)
    try:
        for n in range(3):
            await tables.handle("table.insert", {"table": "notes", "rows": [{"x": str(n)}]})
        assert lookups == 1
        renamed = TableUpdated(name="old-notes", columns=[Column(name="x", type="text")], by="api")
        await store.append(make_event(renamed, project="names", aggregate_id=first, event_id=new_id("evt")))
        second = new_id("tbl")
        await store.append(make_event(created, project="names", aggregate_id=second, event_id=new_id("evt")))
        got = await tables.handle("table.get", {"table": "notes"})
        assert got["id"] == second and got["row_count"] == 0 and lookups == 2
    finally:
        await tables.close()


@pytest.mark.parametrize("near", [False, True])
async def test_an_insert_far_from_the_bound_is_not_refused_for_a_write_meanwhile(
    four_json_columns: tuple[RunTables, str], monkeypatch: pytest.MonkeyPatch, near: bool
) -> None:
    """Another writer's insert lands between a run's look at the table and its append: far from
    the table's bound the run's insert is appended all the same (expecting the table's last event
    for every insert made many writers of one table refuse each other); near it, it is counted
    again on the table as it is now."""
    tables, table_id = four_json_columns
    if near:  # a row in a table of three: past half its bound
        await tables.handle("table.insert", {"table": table_id, "rows": [{"a": "first"}]})
        monkeypatch.setattr(core, "MAX_TABLE_ROWS", 3)
    other = RunTables(tables.store, "shop", new_id("run"))
    attempts = 0
    real = RunTables._append

    async def meanwhile(self: RunTables, tid: str, payload: object, expected: int | None = None) -> None:
        nonlocal attempts
        if self is tables:
            attempts += 1
            if attempts == 1:
                await other.handle("table.insert", {"table": table_id, "rows": [{"a": "theirs"}]})
        await real(self, tid, payload, expected)  # type: ignore[arg-type]

    monkeypatch.setattr(RunTables, "_append", meanwhile)
    try:
        [row] = await tables.handle("table.insert", {"table": table_id, "rows": [{"a": "ours"}]})
    finally:
        await other.close()
    assert row is not None and row["a"] == "ours"
    assert attempts == (2 if near else 1)
    assert (await tables.handle("table.get", {"table": table_id}))["row_count"] == (3 if near else 2)


async def test_a_listing_folds_a_table_again_only_once_it_changed(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crew listing its tables in a loop folded every table it does not use each time."""
    table_id = new_id("tbl")
    created = TableCreated(name="log", columns=[Column(name="x", type="text")], by="api")
    await store.append(make_event(created, project="loop", aggregate_id=table_id, event_id=new_id("evt")))
    folds = 0
    real = RunTables._fold

    async def counted(self: RunTables, *args: Any) -> None:
        nonlocal folds
        folds += 1
        await real(self, *args)

    monkeypatch.setattr(RunTables, "_fold", counted)
    tables, writer = RunTables(store, "loop", new_id("run")), RunTables(store, "loop", new_id("run"))
    try:
        for _ in range(3):
            assert [t["row_count"] for t in await tables.handle("table.list", {})] == [0]
        assert folds == 1
        await writer.handle("table.insert", {"table": table_id, "rows": [{"x": "1"}]})
        folds = 0
        assert [t["row_count"] for t in await tables.handle("table.list", {})] == [1]
        assert [t["row_count"] for t in await tables.handle("table.list", {})] == [1]
        assert folds == 1
    finally:
        await tables.close()
        await writer.close()
