"""Searching the bundled research notes: plain Python, no network, so runs are repeatable."""

from __future__ import annotations

import re
from pathlib import Path

NOTES_FILE = Path(__file__).with_name("notes.md")


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) > 2}


def search_notes(query: str, limit: int = 3) -> str:
    """The notes sharing the most words with ``query``, best first, each with its heading."""
    sections = [s.strip() for s in NOTES_FILE.read_text(encoding="utf-8").split("\n## ") if s.strip()]
    wanted = _words(query)
    scored = sorted(
        ((len(wanted & _words(section)), index, section) for index, section in enumerate(sections)),
        key=lambda item: (-item[0], item[1]),
    )
    hits = [section.removeprefix("## ") for score, _, section in scored[:limit] if score > 0]
    if not hits:
        return f"No notes mention {query!r}."
    return "\n\n".join(f"[note: {hit.splitlines()[0]}] {' '.join(hit.splitlines()[1:])}" for hit in hits)
