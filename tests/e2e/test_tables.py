"""Tables over the API: typed columns, rows checked against them (a 400 names the column),
queries with filters, sort and pages, row updates and deletes with ``_meta``; a rebuilt read
model equals the live one."""

from __future__ import annotations

import asyncio

import httpx

from crewyard.testing.platform import PlatformProcess
from crewyard.testing.readmodels import assert_rebuild_equals_live

COLUMNS = [
    {"name": "company", "type": "text", "required": True},
    {"name": "score", "type": "number"},
    {"name": "active", "type": "boolean"},
    {"name": "founded", "type": "date"},
    {"name": "extra", "type": "json"},
]


def _error(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    return str(r.json()["error"]["message"])


def test_tables_rows_queries_and_validation(api: httpx.Client, platform: PlatformProcess, tmp_path):
    r = api.post("/v1/tables", json={"project": "data", "name": "leads", "columns": COLUMNS})
    assert r.status_code == 201, r.text
    table = r.json()
    tid = table["id"]
    assert table["id"].startswith("tbl_") and table["row_count"] == 0 and table["columns"][0]["required"]

    # Definitions that cannot be taken are 400s naming what is wrong; names are unique per project.
    assert "qa" in _error(
        api.post(
            "/v1/tables", json={"project": "data", "name": "x", "columns": [{"name": "a", "type": "qa"}]}
        ),
        400,
    )
    assert "'id'" in _error(
        api.post(
            "/v1/tables", json={"project": "data", "name": "x", "columns": [{"name": "id", "type": "text"}]}
        ),
        400,
    )
    assert "leads" in _error(
        api.post("/v1/tables", json={"project": "data", "name": "leads", "columns": []}), 409
    )

    one = api.post(
        f"/v1/tables/{tid}/rows",
        json={"company": "Acme", "score": 7, "active": True, "founded": "2001-02-03"},
    )
    assert one.status_code == 201, one.text
    row = one.json()
    assert row["id"].startswith("row_") and row["company"] == "Acme"
    assert (
        row["_meta"]["created_by"] == "api:admin" and row["_meta"]["created_at"] == row["_meta"]["updated_at"]
    )
    many = api.post(
        f"/v1/tables/{tid}/rows",
        json=[
            {"company": "Beta", "score": 3.5, "active": False, "extra": {"tags": ["a"]}},
            {"company": "Gamma", "score": 9},
            {"company": "Delta corp"},
        ],
    )
    assert many.status_code == 201 and len(many.json()["rows"]) == 3

    # Rows are checked against the columns: every refusal names the column.
    assert "'company' is required" in _error(api.post(f"/v1/tables/{tid}/rows", json={"score": 1}), 400)
    assert "'score' must be a finite number" in _error(
        api.post(f"/v1/tables/{tid}/rows", json={"company": "x", "score": "high"}), 400
    )
    assert "'founded'" in _error(
        api.post(f"/v1/tables/{tid}/rows", json={"company": "x", "founded": "yesterday"}), 400
    )
    assert "'active'" in _error(api.post(f"/v1/tables/{tid}/rows", json={"company": "x", "active": 1}), 400)
    assert "unknown column 'nope'" in _error(
        api.post(f"/v1/tables/{tid}/rows", json={"company": "x", "nope": 1}), 400
    )
    assert "row 1" in _error(api.post(f"/v1/tables/{tid}/rows", json=[{"company": "ok"}, {"score": 2}]), 400)
    assert "100" in _error(api.post(f"/v1/tables/{tid}/rows", json=[{"company": "x"}] * 101), 400)
    assert api.get(f"/v1/tables/{tid}").json()["row_count"] == 4  # nothing of a refused insert was stored

    def query(*params: tuple[str, str]) -> dict:
        r = api.get(f"/v1/tables/{tid}/rows", params=list(params))
        assert r.status_code == 200, r.text
        return r.json()

    page = query(("filter", "score:gte:5"), ("sort", "-score"))
    assert [x["company"] for x in page["rows"]] == ["Gamma", "Acme"] and page["total"] == 2
    assert [x["company"] for x in query(("filter", "active:eq:false"))["rows"]] == ["Beta"]
    assert [x["company"] for x in query(("filter", "company:contains:CORP"))["rows"]] == ["Delta corp"]
    assert {x["company"] for x in query(("filter", "score:is_null"))["rows"]} == {"Delta corp"}
    assert [x["company"] for x in query(("sort", "company"), ("limit", "2"), ("offset", "1"))["rows"]] == [
        "Beta",
        "Delta corp",
    ]
    assert "unknown column" in _error(api.get(f"/v1/tables/{tid}/rows", params={"filter": "nope:eq:1"}), 400)
    assert "not a number" in _error(api.get(f"/v1/tables/{tid}/rows", params={"filter": "score:gt:x"}), 400)
    many = [("filter", "company:contains:a")] * 1000 + [("sort", "score")] * 2001
    assert "at most 20 filters" in _error(api.get(f"/v1/tables/{tid}/rows", params=many), 400)
    assert _error(api.get(f"/v1/tables/{tid}/rows", params={"limit": "0"}), 400)
    for odd in ("1_0", " 10", "\uff11\uff10", "-0", "+5", "9" * 30):  # the third: full-width 10
        assert "whole number" in _error(api.get(f"/v1/tables/{tid}/rows", params={"offset": odd}), 400)

    # Update some cells, delete a row; _meta follows.
    r = api.patch(f"/v1/tables/{tid}/rows/{row['id']}", json={"score": 8, "extra": [1, 2]})
    assert r.status_code == 200, r.text
    assert (r.json()["score"], r.json()["extra"], r.json()["company"]) == (8, [1, 2], "Acme")
    assert r.json()["_meta"]["updated_at"] >= row["_meta"]["updated_at"]
    assert "'company' is required" in _error(
        api.patch(f"/v1/tables/{tid}/rows/{row['id']}", json={"company": None}), 400
    )
    assert api.delete(f"/v1/tables/{tid}/rows/{row['id']}").status_code == 200
    _error(api.get(f"/v1/tables/{tid}/rows/{row['id']}"), 404)
    _error(api.patch(f"/v1/tables/{tid}/rows/row_nope", json={"score": 1}), 404)

    # The definition: rename, describe, replace columns (stored rows stay as they are).
    r = api.patch(
        f"/v1/tables/{tid}", json={"name": "prospects", "description": "who to call", "columns": COLUMNS[:2]}
    )
    assert r.status_code == 200 and r.json()["name"] == "prospects" and len(r.json()["columns"]) == 2
    assert api.patch(f"/v1/tables/{tid}", json={"description": None}).json()["description"] is None
    listed = api.get("/v1/tables", params={"project": "data"}).json()["tables"]
    assert [(t["name"], t["row_count"]) for t in listed] == [("prospects", 3)]

    other = api.post("/v1/tables", json={"project": "data", "name": "scratch", "columns": []}).json()
    assert api.delete(f"/v1/tables/{other['id']}").status_code == 200
    _error(api.get(f"/v1/tables/{other['id']}"), 404)
    _error(api.get("/v1/tables/tbl_nope"), 404)

    assert_rebuild_equals_live(platform.nats_url, platform.data_dir, tmp_path / "rebuilt.sqlite3")


async def test_concurrent_definition_changes_both_survive(platform: PlatformProcess) -> None:
    """A PATCH of the description racing a PATCH of the columns: neither undoes the other (each
    is decided on the table as the other left it, whichever lands first)."""
    async with platform.async_client() as api:
        for i in range(6):
            r = await api.post(
                "/v1/tables",
                json={"project": "data", "name": f"race{i}", "columns": [{"name": "a", "type": "text"}]},
            )
            assert r.status_code == 201, r.text
            tid = r.json()["id"]
            columns = [{"name": "a", "type": "text"}, {"name": "b", "type": "number"}]
            answers = await asyncio.gather(
                api.patch(f"/v1/tables/{tid}", json={"columns": columns}),
                api.patch(f"/v1/tables/{tid}", json={"description": "hello"}),
            )
            assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
            table = (await api.get(f"/v1/tables/{tid}")).json()
            assert [c["name"] for c in table["columns"]] == ["a", "b"] and table["description"] == "hello"


def test_a_row_cannot_grow_past_the_limit_by_updates(api: httpx.Client) -> None:
    """The row limit holds for the row as it will be stored, not only for the cells an update
    sends: a row read back can always be written back."""
    columns = [{"name": n, "type": "json"} for n in "abcd"]
    tid = api.post("/v1/tables", json={"project": "data", "name": "grow", "columns": columns}).json()["id"]
    big = "x" * 60_000
    row = api.post(f"/v1/tables/{tid}/rows", json={"a": big}).json()
    assert "larger than" in _error(api.patch(f"/v1/tables/{tid}/rows/{row['id']}", json={"b": big}), 400)
    done = api.patch(f"/v1/tables/{tid}/rows/{row['id']}", json={"b": 1})
    assert done.status_code == 200 and done.json()["a"] == big and done.json()["b"] == 1
    read = api.get(f"/v1/tables/{tid}/rows/{row['id']}").json()
    assert read == done.json()  # the answer is the row as stored
    back = {k: read[k] for k in "ab"}
    assert api.patch(f"/v1/tables/{tid}/rows/{row['id']}", json=back).status_code == 200
    assert api.post(f"/v1/tables/{tid}/rows", json=back).status_code == 201


async def test_an_insert_with_an_idempotency_key_is_made_once(platform: PlatformProcess, tmp_path) -> None:
    """A client that lost an insert's answer sends it again with the same key: the rows the first
    made, not a second copy, whether the repeat comes later or at the same moment (one request
    stores, the stream drops the other copies); the same key with another body is refused."""
    async with platform.async_client() as api:
        columns = [{"name": "company", "type": "text"}]
        tid = (
            await api.post("/v1/tables", json={"project": "data", "name": "keyed", "columns": columns})
        ).json()["id"]
        one = {"Idempotency-Key": "import-17 row 1"}
        first = await api.post(f"/v1/tables/{tid}/rows", json={"company": "Acme"}, headers=one)
        assert first.status_code == 201, first.text
        again = await api.post(f"/v1/tables/{tid}/rows", json={"company": "Acme"}, headers=one)
        assert (again.status_code, again.json()) == (200, first.json())
        other = await api.post(f"/v1/tables/{tid}/rows", json={"company": "Beta"}, headers=one)
        assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused", (
            other.text
        )

        batch = [{"company": f"c{i}"} for i in range(3)]
        raced = await asyncio.gather(
            *(
                api.post(f"/v1/tables/{tid}/rows", json=batch, headers={"Idempotency-Key": "batch"})
                for _ in range(8)
            )
        )
        # One 201 (or none: the first's own write may come back as a duplicate of itself when its
        # acknowledgement was lost and it was sent again), the rest 200, all with the same rows.
        statuses = sorted(a.status_code for a in raced)
        assert statuses in ([200] * 7 + [201], [200] * 8), [a.text for a in raced]
        assert len({tuple(r["id"] for r in a.json()["rows"]) for a in raced}) == 1

        # Keys are per table: the same key in another table is another request.
        elsewhere = (
            await api.post("/v1/tables", json={"project": "data", "name": "keyed2", "columns": columns})
        ).json()
        r = await api.post(f"/v1/tables/{elsewhere['id']}/rows", json={"company": "Acme"}, headers=one)
        assert r.status_code == 201 and r.json()["id"] != first.json()["id"], r.text

        stored = (await api.get(f"/v1/tables/{tid}/rows", params={"sort": "company"})).json()
        assert [row["company"] for row in stored["rows"]] == ["Acme", "c0", "c1", "c2"]
    await asyncio.to_thread(
        assert_rebuild_equals_live, platform.nats_url, platform.data_dir, tmp_path / "rebuilt.sqlite3"
    )


def test_a_page_of_big_rows_stops_at_its_byte_bound_and_the_next_has_the_rest(api: httpx.Client) -> None:
    """A page ends once 4 MiB of rows are in it (``ROWS_PAGE_BYTES``): 80 rows of 60 KB ask for
    500 and get fewer; the next page, from ``offset`` plus the rows shown, has the rest, each row
    exactly once and in the sort's order. A JSON cell goes out as the text stored, not decoded
    and encoded again."""
    columns = [{"name": "n", "type": "number"}, {"name": "cell", "type": "json"}]
    tid = api.post("/v1/tables", json={"project": "data", "name": "big", "columns": columns}).json()["id"]
    cell = [{}] * 20_000  # 60 KB of JSON, some 24 times that once decoded
    for first in range(0, 80, 8):
        rows = [{"n": n, "cell": cell} for n in range(first, first + 8)]
        assert api.post(f"/v1/tables/{tid}/rows", json=rows).status_code == 201
    stored = b'"cell":[' + b",".join([b"{}"] * 20_000) + b"]"

    first_page = api.get(f"/v1/tables/{tid}/rows", params={"sort": "-n", "limit": "500"})
    assert first_page.status_code == 200, first_page.text
    page = first_page.json()
    shown = len(page["rows"])
    assert 0 < shown < 80 and (page["total"], page["limit"], page["offset"]) == (80, 500, 0)
    assert len(first_page.content) <= (4 << 20) + 70_000
    assert first_page.content.count(stored) == shown  # each cell byte for byte as stored
    rest = api.get(f"/v1/tables/{tid}/rows", params={"sort": "-n", "limit": "500", "offset": str(shown)})
    following = rest.json()
    assert (following["total"], following["offset"]) == (80, shown)
    ns = [r["n"] for r in page["rows"] + following["rows"]]
    assert ns == list(range(79, -1, -1))  # every row once, in order
    assert all(r["cell"] == cell and r["_meta"]["created_by"] == "api:admin" for r in following["rows"])

    one = api.get(f"/v1/tables/{tid}/rows/{page['rows'][0]['id']}")
    assert one.status_code == 200 and one.content.count(stored) == 1
    assert one.json() == page["rows"][0]

    # The console decodes rows to show them: its page ends at 1 MiB of them, and links to the rest.
    console = api.get(f"/tables/{tid}")
    assert console.status_code == 200, console.text[:300]
    on_page = sum(r["id"] in console.text for r in page["rows"] + following["rows"])
    assert 0 < on_page < 50 and f'href="?offset={on_page}"' in console.text


def test_a_table_past_its_bound_refuses_more_rows_with_a_409(api: httpx.Client) -> None:
    """A table's rows take at most 64 MiB (``MAX_TABLE_BYTES``; and at most 100,000 rows): a
    runner folds a table a crew uses into memory for each run. A write past it is a 409
    ``limit_reached``, an insert or an update that grows a row, until rows are deleted."""
    columns = [{"name": "cell", "type": "text"}]
    tid = api.post("/v1/tables", json={"project": "data", "name": "full", "columns": columns}).json()["id"]
    cell = "x" * 65_000

    def fill(rows: int) -> httpx.Response:
        for _ in range(200):  # 64 MiB in inserts of 455 KB: 147 of them fit
            r = api.post(f"/v1/tables/{tid}/rows", json=[{"cell": cell}] * rows)
            if r.status_code != 201:
                return r
        raise AssertionError("the table took more than 64 MiB")

    for rows in (7, 1):  # then less than one more row's room is left
        refused = fill(rows)
        assert refused.status_code == 409, refused.text[:300]
        error = refused.json()["error"]
        assert error["code"] == "limit_reached" and "67,108,864 bytes" in error["message"], error
    small = api.post(f"/v1/tables/{tid}/rows", json={"cell": "x" * 100})
    assert small.status_code == 201, small.text[:300]
    grown = api.patch(f"/v1/tables/{tid}/rows/{small.json()['id']}", json={"cell": "x" * 60_000})
    assert grown.status_code == 409 and grown.json()["error"]["code"] == "limit_reached", grown.text[:300]
    assert api.get(f"/v1/tables/{tid}").json()["row_count"] == 1033
    for each in api.get(f"/v1/tables/{tid}/rows", params={"limit": "7"}).json()["rows"]:
        assert api.delete(f"/v1/tables/{tid}/rows/{each['id']}").status_code == 200
    assert api.post(f"/v1/tables/{tid}/rows", json=[{"cell": cell}] * 7).status_code == 201
