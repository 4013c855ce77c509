"""Artifact previews: Markdown rendered and sanitised, images shown, JSON and CSV as tables,
text with line numbers. Everything else is a download.

A crew chose every byte of its files and their content types, so a preview never trusts either:
Markdown goes through markdown-it with raw HTML turned off *and* the nh3 sanitiser (an
allow-list: no script, no event handler, no ``style``, links only to http(s)/mailto and made
``rel="noopener noreferrer nofollow"``); the page's CSP would stop a script that got through
anyway. Tables and text are plain values escaped by the template. Only the first
``PREVIEW_BYTES`` of a file are read for a preview, and the work done on them is bounded too (it
runs in the request's event loop): a table is built for its first ``MAX_ROWS`` rows only, and a
JSON list of objects with more than ``MAX_COLUMNS`` keys, or a CSV file with a row of more
fields, is shown as text.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import posixpath
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup

PREVIEW_BYTES = 1024 * 1024
MAX_ROWS = 500
MAX_LINES = 5000
#: A JSON list of objects with more keys than this among the rows shown is shown as text: a table
#: that wide reads as nothing, and its cells (rows times columns) would be the page's cost.
MAX_COLUMNS = 200
#: Shown inline by the browser's image decoder only (never SVG: it is a document that can script).
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "image/bmp"})
_IMAGE_EXT = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".avif", ".bmp"}
_MD_EXT = (".md", ".markdown")
_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "del", "details", "div", "em", "h1", "h2", "h3",
    "h4", "h5", "h6", "hr", "i", "img", "li", "ol", "p", "pre", "s", "span", "strong", "sub",
    "summary", "sup", "table", "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip
_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title"}, "th": {"align"}, "td": {"align"}}

_md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")
_md.enable("strikethrough")


@dataclass
class Preview:
    kind: str  # markdown | image | table | json | text | none
    html: Markup = field(default_factory=Markup)
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    text: str = ""
    truncated: bool = False
    note: str = ""


def kind_of(name: str, content_type: str) -> str:
    lower, media = name.lower(), content_type.split(";", 1)[0].strip().lower()
    if lower.endswith(_MD_EXT) or media == "text/markdown":
        return "markdown"
    if media in IMAGE_TYPES and any(lower.endswith(ext) for ext in _IMAGE_EXT):
        return "image"
    if lower.endswith(".json") or media == "application/json":
        return "json"
    if lower.endswith(".csv") or media == "text/csv":
        return "csv"
    if media.startswith("text/") or lower.endswith((".txt", ".log", ".yaml", ".yml", ".toml", ".py")):
        return "text"
    return "none"


def markdown(text: str, files: str = "", folder: str = "") -> Markup:
    """Markdown as sanitised HTML (safe to place in a page as is). An image is one of the run's
    files, named from ``folder`` (the Markdown file's own, among them) and served from ``files``
    (``/v1/runs/<id>/artifacts``): ``![chart](charts/a.png)``. Any other source — another
    address of this server (a GET with the viewer's session), another site — is dropped."""
    rendered = _md.render(text)

    def keep(tag: str, attr: str, value: str) -> str | None:
        return _beside(files, folder, value) if (tag, attr) == ("img", "src") else value

    clean = nh3.clean(
        rendered,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
        attribute_filter=keep,
    )
    return Markup(clean)  # sanitised just above, the one place crew HTML is trusted


def _beside(files: str, folder: str, src: str) -> str | None:
    """The URL of the run's file that ``src`` names from ``folder``, or None when it names
    anything else: a scheme, an absolute path, a query, a path out of the run's files."""
    src = unquote(src)
    if not files or not src or src.startswith("/") or any(c in src for c in ":?#\\"):
        return None
    path = posixpath.normpath(posixpath.join(folder, src))
    if path == "." or path == ".." or path.startswith("../"):
        return None
    return f"{files}/{quote(path)}"


def build(name: str, content_type: str, body: bytes, size: int, files: str = "") -> Preview:
    """The preview of an artifact from its first bytes (``body``) and its full ``size``; ``files``
    the URL of the run's files, from which a Markdown file's images are shown. A file its kind's
    reader refuses (a CSV field over the csv module's limit, say) is shown as text: a crew's bytes
    never make the page fail."""
    kind = kind_of(name, content_type)
    truncated = size > len(body)
    if kind == "image":
        return Preview("image")
    if kind == "none":
        return Preview("none", note="no preview for this type of file")
    text = body.decode("utf-8", errors="replace")
    try:
        preview = _read(kind, name, text, truncated, files)
    except Exception as exc:  # whatever a parser makes of hostile bytes: the file is still text
        return _text(text, truncated, note=f"cannot be shown as {kind} ({type(exc).__name__}); shown as text")
    return preview or _text(text, truncated)


def _read(kind: str, name: str, text: str, truncated: bool, files: str) -> Preview | None:
    """The preview its kind gives ``text``; None when it gives none (shown as text)."""
    if kind == "markdown":
        html = markdown(text, files, posixpath.dirname(name))
        return Preview("markdown", html=html, truncated=truncated)
    if kind == "json" and not truncated:
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            return _text(text, truncated, note="not valid JSON; shown as text")
        if _is_records(value):
            table = _records(value[:MAX_ROWS])
            if table is None:
                return _text(text, truncated, note=f"more than {MAX_COLUMNS} columns; shown as text")
            header, rows = table
            return Preview("table", header=header, rows=rows, truncated=len(value) > MAX_ROWS)
        return Preview("json", text=json.dumps(value, indent=2, ensure_ascii=False))
    if kind == "csv":
        # Only the rows shown are read (csv.Error on a field over the module's limit, among others).
        rows = list(itertools.islice(csv.reader(io.StringIO(text)), MAX_ROWS + 1))
        if any(len(row) > MAX_COLUMNS for row in rows):  # a megabyte of commas: a million cells
            return _text(text, truncated, note=f"more than {MAX_COLUMNS} columns; shown as text")
        if rows:
            return Preview(
                "table",
                header=rows[0],
                rows=rows[1 : MAX_ROWS + 1],
                truncated=truncated or len(rows) > MAX_ROWS,
            )
    return None


def _text(text: str, truncated: bool, note: str = "") -> Preview:
    lines = text.splitlines()
    return Preview("text", lines=lines[:MAX_LINES], truncated=truncated or len(lines) > MAX_LINES, note=note)


def _is_records(value: Any) -> bool:
    """Whether ``value`` is a list of objects (shown as a table)."""
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _records(records: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]] | None:
    """The records (only those shown: a cell is built for each of their columns) as (columns,
    rows), the columns in the order they first appear; None when there are more than
    ``MAX_COLUMNS``. Columns are gathered in a dict (a list's ``in`` made n distinct keys cost
    n squared) and the gathering stops at the first one over the bound."""
    columns: dict[str, None] = {}
    for record in records:
        for key in record:
            columns.setdefault(key)
            if len(columns) > MAX_COLUMNS:
                return None
    header = list(columns)
    return header, [[_cell(record.get(col)) for col in header] for record in records]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
