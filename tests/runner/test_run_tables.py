"""A crew's ``table.*`` operations (``crewyard.runner.tables``) against a real event store: a row
cannot grow past the row limit one update at a time, and a query's page is bounded as the API's."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from crewyard.core.events import TableCreated, make_event
from crewyard.core.ids import new_id
from crewyard.core.tables import MAX_ROW_BYTES, Column
from crewyard.eventstore import EventStore
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


async def _refused(tables: RunTables, op: str, args: dict[str, object]) -> str:
    with pytest.raises(OpError) as caught:
        await tables.handle(op, args)
    assert caught.value.code == "invalid", caught.value
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
