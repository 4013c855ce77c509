"""Where run events go on the console's timeline (agent → task → tool)."""

from __future__ import annotations

from crewyard.gateway.console.timeline import ROOT, Timeline


def places(events: list[tuple[str, dict[str, str]]]) -> list[tuple[str, str | None]]:
    timeline = Timeline()
    return [
        (p.into, p.group)
        for p in (timeline.place(seq, kind, data) for seq, (kind, data) in enumerate(events, 1))
    ]


def test_agent_task_and_tool_nest_and_their_ends_go_inside_them():
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


def test_a_tool_that_never_answers_holds_nothing_after_it():
    got = places(
        [
            ("task.started", {"task": "t"}),
            ("tool.called", {"tool": "a"}),
            ("tool.called", {"tool": "b"}),
            ("log", {"message": "x"}),
        ]
    )
    assert got == [(ROOT, "g1"), ("g1-items", "g2"), ("g1-items", "g3"), ("g3-items", None)]


def test_an_end_without_a_start_stays_where_it_happened():
    assert places([("task.completed", {"task": "t"}), ("tool.result", {"tool": "x"})]) == [
        (ROOT, None),
        (ROOT, None),
    ]


def test_an_end_closes_its_own_name_and_what_is_still_open_inside():
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


def test_folding_again_from_the_start_places_every_event_the_same_way():
    events = [("agent.started", {"agent": "A"}), ("tool.called", {"tool": "t"}), ("log", {"message": "m"})]
    assert places(events) == places(events)
