"""Where run events go on the console's timeline (agent → task → tool)."""

from __future__ import annotations

import random
import sys
from types import FrameType
from typing import Any

from crewyard.gateway.console import timeline as timeline_module
from crewyard.gateway.console.timeline import CLOSES, OPENS, ROOT, Timeline


def places(events: list[tuple[str, dict[str, str]]]) -> list[tuple[str, str | None]]:
    timeline = Timeline()
    return [
        (p.into, p.group)
        for p in (timeline.place(seq, kind, data) for seq, (kind, data) in enumerate(events, 1))
    ]


def test_agent_task_and_tool_nest_and_their_ends_go_inside_them() -> None:
    got = places(
        [
            ("run.started", {}),
            ("agent.started", {"agent": "Researcher"}),
            ("task.started", {"task": "Research", "agent": "Researcher"}),
            ("log", {"message": "note"}),
            ("tool.called", {"tool": "search"}),
            ("tool.result", {"tool": "search"}),
            ("task.completed", {"task": "Research"}),
            ("agent.completed", {"agent": "Researcher"}),
            ("log", {"message": "after"}),
            ("run.completed", {}),
        ]
    )
    assert got == [
        (ROOT, None),
        (ROOT, "g2"),
        ("g2-items", "g3"),
        ("g3-items", None),
        ("g3-items", "g5"),
        ("g5-items", None),
        ("g3-items", None),
        ("g2-items", None),
        (ROOT, None),
        (ROOT, None),
    ]


def test_a_tool_that_never_answers_holds_nothing_after_it() -> None:
    got = places(
        [
            ("task.started", {"task": "t"}),
            ("tool.called", {"tool": "a"}),
            ("tool.called", {"tool": "b"}),
            ("log", {"message": "x"}),
        ]
    )
    assert got == [(ROOT, "g1"), ("g1-items", "g2"), ("g1-items", "g3"), ("g3-items", None)]


def test_an_end_without_a_start_stays_where_it_happened() -> None:
    assert places([("task.completed", {"task": "t"}), ("tool.result", {"tool": "x"})]) == [
        (ROOT, None),
        (ROOT, None),
    ]


def test_an_end_closes_its_own_name_and_what_is_still_open_inside() -> None:
    got = places(
        [
            ("agent.started", {"agent": "A"}),
            ("agent.started", {"agent": "B"}),
            ("task.started", {"task": "t"}),
            ("agent.completed", {"agent": "A"}),
            ("log", {"message": "top"}),
        ]
    )
    assert got[3] == ("g1-items", None)
    assert got[4] == (ROOT, None)


def test_folding_again_from_the_start_places_every_event_the_same_way() -> None:
    events = [("agent.started", {"agent": "A"}), ("tool.called", {"tool": "t"}), ("log", {"message": "m"})]
    assert places(events) == places(events)


# A crew shaped like the CLI's own runs: two agents, tasks, tools that answer, fail or never
# answer, a nameless close, a close of an outer group while inner ones are open, an artifact.
NESTED_RUN: list[tuple[str, dict[str, Any]]] = [
    ("run.queued", {}),
    ("run.started", {"backend": "process"}),
    ("agent.started", {"agent": "Researcher", "task": "Find sources"}),
    ("task.started", {"task": "Find sources", "agent": "Researcher"}),
    ("log", {"message": "thinking"}),
    ("tool.called", {"tool": "search", "input": {"q": "x"}}),
    ("log", {"message": "searching"}),
    ("tool.result", {"tool": "search", "output": "3 hits"}),
    ("tool.called", {"tool": "fetch"}),
    ("tool.error", {"tool": "fetch", "error": "404"}),
    ("tool.called", {"tool": "fetch"}),
    ("tool.result", {}),
    ("artifact", {"name": "notes.md", "size": 10}),
    ("task.completed", {"task": "Find sources", "output": "done"}),
    ("agent.completed", {"agent": "Researcher"}),
    ("agent.started", {"agent": "Writer"}),
    ("task.started", {"task": "Write"}),
    ("tool.called", {"tool": "draft"}),
    ("task.started", {"task": "Review"}),
    ("task.completed", {"task": "Review"}),
    ("task.completed", {}),
    ("agent.error", {"agent": "Writer", "error": "boom"}),
    ("log", {"message": "at the top"}),
    ("run.completed", {"duration_ms": 5}),
]

# Where the timeline placed each event of NESTED_RUN before open groups were indexed.
NESTED_RUN_PLACED = [
    (ROOT, None, None, 0),  # run.queued
    (ROOT, None, None, 0),  # run.started
    (ROOT, "g3", "agent", 0),  # agent.started Researcher
    ("g3-items", "g4", "task", 1),  # task.started
    ("g4-items", None, None, 2),  # log
    ("g4-items", "g6", "tool", 2),  # tool.called search
    ("g6-items", None, None, 3),  # log
    ("g6-items", None, None, 3),  # tool.result
    ("g4-items", "g9", "tool", 2),  # tool.called fetch
    ("g9-items", None, None, 3),  # tool.error
    ("g4-items", "g11", "tool", 2),  # tool.called fetch
    ("g11-items", None, None, 3),  # nameless tool.result
    ("g4-items", None, None, 2),  # artifact
    ("g4-items", None, None, 2),  # task.completed
    ("g3-items", None, None, 1),  # agent.completed
    (ROOT, "g16", "agent", 0),  # agent.started Writer
    ("g16-items", "g17", "task", 1),  # task.started Write
    ("g17-items", "g18", "tool", 2),  # tool.called draft, never answered
    ("g17-items", "g19", "task", 2),  # task.started Review: the silent tool holds nothing more
    ("g19-items", None, None, 3),  # task.completed Review
    ("g17-items", None, None, 2),  # nameless task.completed
    ("g16-items", None, None, 1),  # agent.error
    (ROOT, None, None, 0),  # log
    (ROOT, None, None, 0),  # run.completed
]


def test_a_nested_agent_task_and_tool_run_is_placed_as_it_always_was() -> None:
    timeline = Timeline()
    got = [
        (p.into, p.group, p.kind, p.depth)
        for p in (timeline.place(seq, kind, data) for seq, (kind, data) in enumerate(NESTED_RUN, 1))
    ]
    assert got == NESTED_RUN_PLACED


class _Scan:
    """The timeline as first written: a close scans the open groups from the innermost out."""

    def __init__(self) -> None:
        self.stack: list[tuple[str, str, str]] = []

    def place(self, seq: int, event_type: str, data: dict[str, Any]) -> tuple[str, str | None, int]:
        if event_type.startswith("run."):
            if event_type in ("run.completed", "run.failed", "run.canceled"):
                self.stack.clear()
            return (ROOT, None, 0)
        inner = f"{self.stack[-1][2]}-items" if self.stack else ROOT
        if kind := OPENS.get(event_type):
            while self.stack and self.stack[-1][0] == "tool":
                self.stack.pop()
            inner = f"{self.stack[-1][2]}-items" if self.stack else ROOT
            self.stack.append((kind, _named(data, kind), f"g{seq}"))
            return (inner, f"g{seq}", len(self.stack) - 1)
        if kind := CLOSES.get(event_type):
            name = _named(data, kind)
            for index in range(len(self.stack) - 1, -1, -1):
                opened_kind, opened_name, group = self.stack[index]
                if opened_kind == kind and (not name or not opened_name or opened_name == name):
                    del self.stack[index:]
                    return (f"{group}-items", None, index + 1)
        return (inner, None, len(self.stack))


def _named(data: dict[str, Any], kind: str) -> str:
    value = data.get(kind)
    return value if isinstance(value, str) else ""


def test_any_run_is_placed_as_scanning_the_open_groups_places_it() -> None:
    types = [*OPENS, *CLOSES, "log", "artifact", "run.started", "run.failed"]
    rng = random.Random(20240601)
    for _ in range(2000):
        timeline, scan = Timeline(), _Scan()
        for seq in range(1, rng.randint(2, 60)):
            event_type = rng.choice(types)
            kind = OPENS.get(event_type) or CLOSES.get(event_type) or "agent"
            data = {kind: rng.choice(["", "a", "b", "c", 7])} if rng.random() < 0.8 else {}
            placed = timeline.place(seq, event_type, data)
            assert (placed.into, placed.group, placed.depth) == scan.place(seq, event_type, data)


def _steps_to_place(events: list[tuple[str, dict[str, Any]]]) -> int:
    """Lines of the timeline's module run while placing ``events``: its work, on any machine."""
    steps = 0
    source = timeline_module.__file__

    def count(frame: FrameType, event: str, arg: object) -> Any:
        nonlocal steps
        steps += event == "line"
        return count

    def enter(frame: FrameType, event: str, arg: object) -> Any:
        return count if frame.f_code.co_filename == source else None

    timeline = Timeline()
    previous = sys.gettrace()
    sys.settrace(enter)
    try:
        for seq, (event_type, data) in enumerate(events, 1):
            timeline.place(seq, event_type, data)
    finally:
        sys.settrace(previous)
    return steps


def _poisoned(n: int) -> list[tuple[str, dict[str, Any]]]:
    # n agents that stay open, then n closes naming none of them: each close used to look at
    # every open group, n * n steps for 2n events (12,000 of each: 78 s of the event loop).
    opened = [("agent.started", {"agent": f"a{i}"}) for i in range(n)]
    return opened + [("agent.completed", {"agent": "nobody"})] * n


def test_placing_costs_the_same_per_event_however_many_groups_a_crew_leaves_open() -> None:
    small, large = _steps_to_place(_poisoned(200)), _steps_to_place(_poisoned(400))
    assert large <= 2.2 * small  # twice the events, twice the work: not four times
    assert large <= 40 * 800  # a handful of steps per event, not one per open group
