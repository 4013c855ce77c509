"""Two hand-written "agents" reporting through crewyard's SDK (``crewyard_runtime.emit``).

Input: ``{"text": "...", "title": "..."}``. Output: word statistics, also written to
``summary.md`` and ``stats.json`` in the artifacts folder.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from crewyard_runtime import artifacts_dir, emit, log

DEFAULT_TEXT = (
    "Crews of agents split work into tasks. Each agent uses tools, and every tool call is an event "
    "that the platform streams while the run is still going."
)


def word_count(text: str, top: int = 5) -> dict[str, Any]:
    """The tool: how many words, and the most frequent ones (ties broken alphabetically)."""
    words = re.findall(r"[a-z']+", text.lower())
    common = sorted(Counter(words).items(), key=lambda item: (-item[1], item[0]))[:top]
    return {"words": len(words), "unique": len(set(words)), "top": [w for w, _ in common]}


def _analyst(text: str) -> dict[str, Any]:
    task = "Count the words of the text"
    emit("agent.started", agent="analyst", task=task)
    emit("tool.called", tool="word_count", input={"text": text[:200]}, agent="analyst")
    stats = word_count(text)
    emit("tool.result", tool="word_count", output=stats)
    emit("agent.completed", agent="analyst", task=task, output=stats)
    return stats


def _editor(title: str, stats: dict[str, Any]) -> str:
    task = "Write the summary"
    emit("agent.started", agent="editor", task=task)
    summary = (
        f"# {title}\n\n{stats['words']} words, {stats['unique']} distinct.\n\n"
        "Most frequent: " + ", ".join(stats["top"]) + "\n"
    )
    (artifacts_dir() / "summary.md").write_text(summary, encoding="utf-8")
    (artifacts_dir() / "stats.json").write_text(json.dumps(stats, indent=2), encoding="utf-8")
    emit("agent.completed", agent="editor", task=task, output="summary.md")
    return summary


def run(inputs: dict[str, Any]) -> dict[str, Any]:
    text = str(inputs.get("text") or DEFAULT_TEXT)
    title = str(inputs.get("title") or "Word statistics")
    log(f"analysing {len(text)} characters")
    emit("task.started", task="analyse", agent="analyst")
    stats = _analyst(text)
    emit("task.completed", task="analyse", agent="analyst", output=stats)
    emit("task.started", task="summarise", agent="editor")
    summary = _editor(title, stats)
    emit("task.completed", task="summarise", agent="editor", output=summary)
    print(f"done: {stats['words']} words")  # plain prints become log events too
    return {"title": title, **stats, "artifacts": ["summary.md", "stats.json"]}
