"""A page of a table's rows is each row's JSON as SQLite puts it together around the stored
values (never decoded to be encoded again), bounded by bytes: walking pages from ``offset`` plus
the rows shown gives every matching row once, in the query's order, however the bound falls."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import msgspec

from crewyard.core.events import NewRow, RowsInserted, TableCreated, make_event
from crewyard.core.tables import Column, parse_query
from crewyard.readmodel import TABLE_HANDLERS, ReadModel

COLUMNS = [Column(name="n", type="number"), Column(name="cell", type="json")]
AT = datetime(2026, 1, 1, tzinfo=UTC)


async def _table(path: Path, values: list[dict[str, object]]) -> ReadModel:
    rm = await ReadModel.open(path)
    created = TableCreated(name="t", columns=COLUMNS, by="api")
    rows = RowsInserted(rows=[NewRow(id=f"row_{i:04d}", values=v) for i, v in enumerate(values)], by="run:x")
    for seq, payload in enumerate((created, rows), start=1):
        event = make_event(payload, project="p", aggregate_id="tbl_t", event_id=f"evt_{seq}", time=AT)
        await TABLE_HANDLERS[event.type](rm.db, seq, event)
    return rm


async def test_pages_walked_by_bytes_show_every_row_once_in_order(tmp_path: Path) -> None:
    # Sizes from 2 bytes to 20 KB, so that pages end at varied places; odd values stored as they are.
    values: list[dict[str, object]] = [
        {"n": i % 7, "cell": {"s": '\u00e9\u2028"\\' * (i * 37 % 5000), "f": 1.5e300, "i": 2**63}}
        for i in range(60)
    ]
    values += [{}, {"n": 3}]
    rm = await _table(tmp_path / "rm.sqlite3", values)
    try:
        filters, sort = parse_query(COLUMNS, ["n:not_null"], ["-n", "_meta.created_at"])
        whole, total = await rm.rows(sort=sort, filters=filters, table_id="tbl_t", limit=500, offset=0)
        assert total == len(whole) == 61
        assert [r["n"] for r in whole] == sorted((r["n"] for r in whole), reverse=True)
        walked: list[bytes] = []
        while len(walked) < total:
            page, _ = await rm.rows_json(
                "tbl_t", filters=filters, sort=sort, limit=25, offset=len(walked), budget=30_000
            )
            assert page and (len(page) == 1 or sum(map(len, page)) <= 30_000)
            walked += page
        assert [msgspec.json.decode(r) for r in walked] == whole
        # The API's shape: id, the values as stored, _meta; the stored text is in the row's.
        by_id = {f"row_{i:04d}": v for i, v in enumerate(values)}
        for text, row in zip(walked, whole, strict=True):
            stored = msgspec.json.encode(by_id[row["id"]])
            assert stored[1:-1] in text
            meta = {"created_at": AT.isoformat(), "created_by": "run:x"}
            meta |= {"updated_at": AT.isoformat(), "updated_by": "run:x"}
            assert row == {"id": row["id"], **by_id[row["id"]], "_meta": meta}
        empty = await rm.row_json("tbl_t", "row_0060")
        assert empty is not None and msgspec.json.decode(empty)["id"] == "row_0060"
        assert await rm.row_json("tbl_t", "row_nope") is None
    finally:
        await rm.close()
