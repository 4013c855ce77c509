"""Writes everything a browser might execute: script tags, event handlers, javascript: links,
an HTML file, an SVG with script, a script and a stylesheet for markup that slipped past escaping
to load from this origin, and a real PNG image (to check images still show)."""

from __future__ import annotations

import struct
import zlib

from crewyard_runtime import artifacts_dir, emit

SCRIPT = "<script>alert('xss')</script>"
HANDLER = "<img src=x onerror=\"alert('xss')\">"
LINK = "[click me](javascript:alert('xss'))"
HTML_LINK = "<a href=\"javascript:alert('xss')\">html link</a>"
#: Loaded by ``<script src>``: it would read the page's CSRF token and say so.
SCRIPT_FILE = (
    "window.__pwned = (document.querySelector('input[name=_csrf]') || {}).value || 'ran';\nalert('xss');\n"
)
#: Loaded by ``<link rel=stylesheet>``: it would paint the page.
STYLE_FILE = "body { outline: 7px solid red !important; }\n"


def png(width: int = 24, height: int = 16) -> bytes:
    """A small solid-colour PNG, made by hand (no imaging library in the crew)."""
    raw = b"".join(b"\x00" + b"\x29\x52\xcc" * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def run(inputs: dict) -> dict:
    print(f"log line {SCRIPT} {HANDLER}")
    emit("agent.started", agent=SCRIPT, task=HANDLER)
    emit("tool.called", tool=SCRIPT, input={"q": HTML_LINK}, agent=SCRIPT)
    emit("tool.result", tool=SCRIPT, output=HANDLER)
    emit("agent.completed", agent=SCRIPT, task=HANDLER, output=LINK)
    out = artifacts_dir()
    (out / "evil.md").write_text(
        "\n".join(
            [
                "# Report",
                "",
                SCRIPT,
                "",
                HANDLER,
                "",
                LINK,
                "",
                HTML_LINK,
                "",
                "[fine](https://example.com)",
                "",
            ]
        )
    )
    (out / "evil.html").write_text(f"<html><body>{SCRIPT}</body></html>")
    (out / "evil.svg").write_text(f'<svg xmlns="http://www.w3.org/2000/svg">{SCRIPT}</svg>')
    (out / "evil.js").write_text(SCRIPT_FILE)
    (out / "evil.css").write_text(STYLE_FILE)
    (out / "chart.png").write_bytes(png())
    (out / "rows.csv").write_text(f"name,value\n{SCRIPT},1\nplain,2\n")
    (out / "rows.json").write_text(
        f'[{{"name": "{HANDLER.replace(chr(34), chr(39))}", "n": 1}}, {{"name": "b", "n": 2}}]'
    )
    return {"html": SCRIPT, "link": LINK, "handler": HANDLER}
