"""examples/hello: a crew in plain Python.

It "researches" a topic with a toy tool, logs as it goes, and writes a markdown report into the
run's artifacts folder. Events are emitted with the crewyard runtime SDK.
"""

from __future__ import annotations

import os
import time

from crewyard_runtime import artifacts_dir, emit


def count_words(text: str) -> int:
    return len(text.split())


def run(inputs: dict) -> dict:
    topic = str(inputs.get("topic", "AI agents"))
    delay = float(inputs.get("delay", 0.2))
    print(f"Starting crew execution on {topic!r}")

    emit("agent.started", agent="Researcher", task=f"Research {topic}")
    emit("task.started", task=f"Research {topic}", agent="Researcher")
    notes = [f"{topic} is studied by many teams.", f"{topic} changes how software is built."]
    for i, note in enumerate(notes, 1):
        time.sleep(delay)
        print(f"note {i}: {note}")
    emit("tool.called", tool="count_words", input={"text": " ".join(notes)}, agent="Researcher")
    words = count_words(" ".join(notes))
    emit("tool.result", tool="count_words", output=words)
    emit("task.completed", task=f"Research {topic}", agent="Researcher", output=f"{len(notes)} notes")
    emit("agent.completed", agent="Researcher", task=f"Research {topic}", output=f"{words} words")

    emit("agent.started", agent="Writer", task="Write the report")
    report = "\n".join([f"# {topic}", "", *[f"- {n}" for n in notes], "", f"_{words} words of notes._", ""])
    (artifacts_dir() / "report.md").write_text(report)
    emit("agent.completed", agent="Writer", task="Write the report", output="report.md")
    print("Report written", flush=True)
    return {"topic": topic, "notes": len(notes), "words": words, "pid_visible": os.getpid() > 0}
