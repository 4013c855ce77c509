"""Artifact previews: what a crew wrote is shown, never run."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest

from crewyard.gateway.console import previews


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))


def elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    """The elements a browser would make of ``html`` (text that looks like a tag is not one)."""
    parser = _Tags()
    parser.feed(html)
    return parser.found


def assert_inert(html: str) -> None:
    for tag, attrs in elements(html):
        assert tag not in ("script", "iframe", "object", "embed", "style"), tag
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            assert not (value or "").strip().lower().startswith(("javascript:", "data:", "vbscript:")), (
                tag,
                value,
            )


def test_markdown_keeps_formatting_and_turns_script_handlers_and_javascript_links_into_text():
    html = str(
        previews.markdown(
            "# Title\n\n<script>alert(1)</script>\n\n<img src=x onerror=alert(1)>\n\n"
            '[bad](javascript:alert(1)) <a href="javascript:alert(1)">raw</a>\n\n'
            "[good](https://example.com) **bold**\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
        )
    )
    assert "<h1>Title</h1>" in html
    assert "<strong>bold</strong>" in html
    assert "<table>" in html
    assert_inert(html)
    assert [t for t, _ in elements(html) if t == "img"] == []  # raw HTML is text, not an element
    assert 'href="https://example.com"' in html
    assert 'rel="noopener noreferrer nofollow"' in html
    assert "&lt;script&gt;" in html  # raw HTML in Markdown is text


def test_kinds_follow_name_and_type_and_svg_is_never_an_image():
    assert previews.kind_of("report.md", "application/octet-stream") == "markdown"
    assert previews.kind_of("chart.png", "image/png") == "image"
    assert previews.kind_of("chart.svg", "image/svg+xml") == "none"
    assert previews.kind_of("fake.png", "text/html") == "text"  # shown as escaped lines, never an image
    assert previews.kind_of("page.html", "text/html") == "text"
    assert previews.kind_of("data.csv", "text/csv") == "csv"
    assert previews.kind_of("data.json", "application/json") == "json"
    assert previews.kind_of("blob.bin", "application/octet-stream") == "none"


def test_a_list_of_objects_is_a_table_and_other_json_is_indented():
    body = json.dumps([{"a": 1, "b": "x"}, {"a": 2, "c": None}]).encode()
    table = previews.build("rows.json", "application/json", body, len(body))
    assert (table.kind, table.header, table.rows) == (
        "table",
        ["a", "b", "c"],
        [["1", "x", ""], ["2", "", ""]],
    )
    other = previews.build("v.json", "application/json", b'{"k": [1]}', 10)
    assert other.kind == "json" and '"k"' in other.text


def test_a_json_tables_work_is_bounded_by_the_rows_and_columns_shown(monkeypatch: pytest.MonkeyPatch):
    """Each record with a key of its own (8,000 of them, 95 KB) took 8 s and 600 MB of the event
    loop: every key was searched for in a list, and every record made a row of 8,000 cells before
    500 rows were kept. Counted in cells built, not in seconds."""
    cells = 0
    cell = previews._cell

    def counted(value: object) -> str:
        nonlocal cells
        cells += 1
        return cell(value)

    monkeypatch.setattr(previews, "_cell", counted)
    wide = json.dumps([{f"k{i}": 0} for i in range(8000)], separators=(",", ":")).encode()
    shown = previews.build("wide.json", "application/json", wide, len(wide))
    assert shown.kind == "text" and "columns" in shown.note and shown.lines and cells == 0
    # A long list: only the rows shown are built.
    long = json.dumps([{"a": i, "b": "x", "c": None} for i in range(5000)]).encode()
    table = previews.build("long.json", "application/json", long, len(long))
    assert table.kind == "table" and table.header == ["a", "b", "c"] and table.truncated
    assert len(table.rows) == previews.MAX_ROWS and cells == 3 * previews.MAX_ROWS
    # As wide as a table gets: still a table, every column of it.
    edge = [{f"k{i}": i} for i in range(previews.MAX_COLUMNS)]
    body = json.dumps(edge).encode()
    table = previews.build("edge.json", "application/json", body, len(body))
    assert table.kind == "table" and len(table.header) == previews.MAX_COLUMNS


def test_csv_is_a_table_and_text_has_lines_and_long_files_say_they_were_cut():
    body = b"name,value\n<b>x</b>,1\n"
    csv = previews.build("t.csv", "text/csv", body, len(body))
    assert (csv.kind, csv.header, csv.rows) == ("table", ["name", "value"], [["<b>x</b>", "1"]])
    text = previews.build("log.txt", "text/plain", b"one\ntwo\n", 100)
    assert (text.kind, text.lines, text.truncated) == ("text", ["one", "two"], True)
    broken = previews.build("b.json", "application/json", b"{nope", 5)
    assert broken.kind == "text" and broken.note


def test_a_csv_its_reader_refuses_is_shown_as_text_not_a_failed_page() -> None:
    # A field over the csv module's limit (131072 characters) made the artifact page a 500.
    body = b'name,blob\nbig,"' + b"x" * 200_000 + b'"\n'
    shown = previews.build("data.csv", "text/csv", body, len(body))
    assert shown.kind == "text" and "as csv" in shown.note and shown.lines[0] == "name,blob"
    # Only the rows a table shows are read: such a field further down does not matter.
    rows = b"".join(b"%d,x\n" % i for i in range(previews.MAX_ROWS + 1))
    body = b"n,v\n" + rows + b'big,"' + b"x" * 200_000 + b'"\n'
    table = previews.build("data.csv", "text/csv", body, len(body))
    assert table.kind == "table" and len(table.rows) == previews.MAX_ROWS and table.truncated


def test_html_that_markdown_lets_through_is_sanitised_too():
    # Links and images markdown itself makes: the sanitiser is the second wall.
    html = str(
        previews.markdown('[x](JaVaScRiPt:alert(1)) ![i](javascript:alert(1) "t") <https://ok.example>')
    )
    assert_inert(html)
    assert ("a", {"href": "https://ok.example", "rel": "noopener noreferrer nofollow"}) in elements(html)


def test_a_reports_images_are_the_runs_own_files_and_nothing_else():
    files = "/v1/runs/run_1/artifacts"
    body = (
        b"![a](chart.png) ![b](sub/b%20c.png) ![up](../top.png) ![out](../../x.png)"
        b" ![api](/v1/runs/run_2/events?cancel_on_disconnect=true) ![site](https://example.com/t.png)"
        b" ![proto](//example.com/t.png) ![q](chart.png?x=1) ![win](..\\x.png)"
    )
    html = str(previews.build("reports/r.md", "text/markdown", body, len(body), files).html)
    sources = {a.get("alt"): a.get("src") for t, a in elements(html) if t == "img"}
    assert sources == {
        "a": f"{files}/reports/chart.png",
        "b": f"{files}/reports/sub/b%20c.png",
        "up": f"{files}/top.png",
        "out": None,
        "api": None,
        "site": None,
        "proto": None,
        "q": None,
        "win": None,
    }
    # Without the run's files (no run to show them from), no image has a source.
    alone = str(previews.markdown("![a](chart.png)"))
    assert [a.get("src") for t, a in elements(alone) if t == "img"] == [None]


def test_a_csv_with_more_columns_than_a_table_shows_is_text() -> None:
    body = b"a,b\n" + b"," * 300_000 + b"\n"
    shown = previews.build("wide.csv", "text/csv", body, len(body))
    assert shown.kind == "text" and "columns" in shown.note
    edge = b",".join(b"c%d" % i for i in range(previews.MAX_COLUMNS)) + b"\n"
    assert previews.build("edge.csv", "text/csv", edge, len(edge)).kind == "table"
