"""Tables in the core: column definitions, rows checked against them, filters and sorts."""

from __future__ import annotations

import sqlite3

import pytest

from crewyard.core import tables as t
from crewyard.core.bounds import MAX_JSON_DEPTH
from crewyard.core.events import InvalidEvent, NewRow, RowsInserted, encode_checked, make_event

COLS = [
    t.Column(name="company", type="text", required=True),
    t.Column(name="score", type="number"),
    t.Column(name="active", type="boolean"),
    t.Column(name="founded", type="date"),
    t.Column(name="extra", type="json"),
]


def test_column_names_are_checked():
    for bad in ("id", "_meta", "_x", "1a", "a-b", "x" * 64):
        with pytest.raises(t.InvalidTable, match="invalid column name"):
            t.check_columns([t.Column(name=bad, type="text")])
    with pytest.raises(t.InvalidTable, match="twice"):
        t.check_columns([t.Column(name="a", type="text"), t.Column(name="A", type="number")])


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({}, "'company' is required"),
        ({"company": None}, "'company' is required"),
        ({"company": 5}, "'company' must be a text"),
        ({"company": "x", "score": True}, "'score' must be a finite number"),
        ({"company": "x", "score": float("inf")}, "'score' must be a finite number"),
        ({"company": "x", "active": "yes"}, "'active' must be a boolean"),
        ({"company": "x", "founded": "2024-13-01"}, "'founded' must be an ISO 8601"),
        ({"company": "x", "nope": 1}, "unknown column 'nope'"),
        ([1], "a row must be a JSON object"),
    ],
)
def test_rows_that_do_not_fit_name_the_column(values, needle):
    with pytest.raises(t.InvalidTable, match=needle):
        t.check_row(COLS, values)


def test_rows_that_fit_and_partial_updates():
    row = {
        "company": "A",
        "score": 1.5,
        "active": False,
        "founded": "2024-01-02T03:04:05+00:00",
        "extra": [1],
    }
    assert (
        t.check_row(COLS, {**row, "id": "row_x", "_meta": {}}) == row
    )  # the platform's own fields are ignored
    assert t.check_row(COLS, {"score": None}, partial=True) == {"score": None}
    with pytest.raises(t.InvalidTable, match="required"):
        t.check_row(COLS, {"company": None}, partial=True)


def test_inserts_are_bounded():
    with pytest.raises(t.InvalidTable, match="at most 100"):
        t.check_rows(COLS, [{"company": "x"}] * 101)
    with pytest.raises(t.InvalidTable, match="row 1: column 'company'"):
        t.check_rows(COLS, [{"company": "x"}, {}])
    with pytest.raises(t.InvalidTable, match="larger than"):
        t.check_row(COLS, {"company": "x" * (t.MAX_ROW_BYTES + 1)})


def test_filters_read_values_as_the_columns_type():
    assert t.parse_filter(COLS, "score:gte:5") == t.Filter("score", "gte", 5, "number")
    assert t.parse_filter(COLS, "score:lt:2.5").value == 2.5
    assert t.parse_filter(COLS, "active:eq:true").value is True
    assert t.parse_filter(COLS, "company:contains:a:b").value == "a:b"
    assert t.parse_filter(COLS, "company:contains:" + "a" * 256).value == "a" * 256
    assert t.parse_filter(COLS, "founded:is_null").op == "is_null"
    # Past SQLite's 64-bit integers a number stays a float, which SQLite compares like any other.
    for huge in ("1e30", "1e19", "-9.3e18"):
        value = t.parse_filter(COLS, f"score:gt:{huge}").value
        assert value == float(huge)
        assert sqlite3.connect(":memory:").execute("SELECT ? < 0", (value,)).fetchone() == (value < 0,)
    # An integer is read exactly, as SQLite reads the integer a row holds; a float has 53 bits.
    db = sqlite3.connect(":memory:")
    for whole in (2**53 + 1, -(2**53) - 1, 2**63 - 1, -(2**63)):
        value = t.parse_filter(COLS, f"score:eq:{whole}").value
        assert value == whole and isinstance(value, int)
        cell = db.execute("SELECT json_extract(?, '$.n') = ?", (f'{{"n": {whole}}}', value)).fetchone()
        assert cell == (1,)
    assert t.parse_filter(COLS, "score:eq:+0042").value == 42
    assert t.parse_filter(COLS, f"score:eq:{2**63}").value == float(2**63)  # past 64 bits: a float
    for bad, needle in (
        ("nope:eq:1", "unknown column"),
        ("score:like:1", "unknown operator"),
        ("score:eq:x", "not a number"),
        ("score:eq:nan", "finite"),
        ("active:eq:1", "true or false"),
        ("score:contains:1", "text columns"),
        # Sought in every row's cell, twice a query: 60 KiB of it stalled the read model a minute.
        ("company:contains:" + "a" * 257, "at most 256 characters"),
    ):
        with pytest.raises(t.InvalidTable, match=needle):
            t.parse_filter(COLS, bad)


def test_sorts():
    assert t.parse_sort(COLS, "-score") == t.Sort("score", True)
    assert t.parse_sort(COLS, "_meta.created_at") == t.Sort("created_at", False, meta=True)
    with pytest.raises(t.InvalidTable):
        t.parse_sort(COLS, "-nope")


def test_a_query_has_a_bounded_number_of_filters_and_sort_keys():
    filters, sorts = ["score:gte:1"] * t.MAX_FILTERS, ["-score"] * t.MAX_SORTS
    parsed, order = t.parse_query(COLS, filters, sorts)
    assert len(parsed) == t.MAX_FILTERS and len(order) == t.MAX_SORTS
    # Each filter is a pass over every row; a thousand of them held the query thread for 30 s
    # (and past SQLite's own limits, a 500).
    with pytest.raises(t.InvalidTable, match=f"at most {t.MAX_FILTERS} filters"):
        t.parse_query(COLS, [*filters, "score:gte:1"], [])
    with pytest.raises(t.InvalidTable, match=f"at most {t.MAX_SORTS} sort keys"):
        t.parse_query(COLS, [], [*sorts, "score"])


def _nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth - 1):
        value = [value]
    return value


def test_row_values_nested_too_deep_are_never_appended():
    ok = RowsInserted(rows=[NewRow(id="row_1", values={"extra": _nested(MAX_JSON_DEPTH - 1)})])
    encode_checked(make_event(ok, project="p", aggregate_id="tbl_1", event_id="evt_1"))
    deep = RowsInserted(rows=[NewRow(id="row_1", values={"extra": _nested(MAX_JSON_DEPTH + 1)})])
    with pytest.raises(InvalidEvent):
        encode_checked(make_event(deep, project="p", aggregate_id="tbl_1", event_id="evt_1"))
