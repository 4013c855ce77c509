"""Thread runs through ``python -m crewyard_runtime``, its requests answered as a runner would:
the LangGraph chat example (written for LangGraph Platform: no checkpointer of its own) keeps its
conversation across runs through the platform's checkpoints and resumes after ``interrupt()``;
plain crews use the helper or the input/output convention."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from crewyard.testing import FakeLLM
from crewyard.testing.runtime import run_runtime_in_thread

CHAT = Path(__file__).resolve().parents[2] / "examples" / "langgraph-chat"


def _say(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def _next_state(saved: dict[str, Any]) -> dict[str, Any]:
    """What the platform answers the next run's thread.get with, after this save."""
    return {**saved, "interrupted": bool(saved.get("interrupts"))}


def test_a_langgraph_chat_accumulates_interrupts_and_resumes(tmp_path: Path, fake_llm: FakeLLM):
    def run(n: int, inputs: dict[str, Any], state: dict[str, Any], **kw: Any) -> Any:
        return run_runtime_in_thread(
            tmp_path / f"run{n}",
            "chat.graph:graph",
            "langgraph",
            CHAT,
            inputs,
            state=state,
            llm=fake_llm,
            **kw,
        )

    first = run(1, _say("hello"), {})
    assert first.run.result["messages"][0] == {"role": "user", "content": "hello"}, first.run.error
    assert first.saved is not None and first.saved["checkpoint"]["format"] == "langgraph"
    second = run(2, _say("how are you?"), _next_state(first.saved))
    assert [m["role"] for m in second.saved["values"]["messages"]] == ["user", "assistant"] * 2
    third = run(3, _say("please review my plan"), _next_state(second.saved))
    values = third.saved["values"]
    assert len(values["messages"]) == 6 and "reviewed" not in values
    assert third.saved["interrupts"][0]["value"]["question"] == "Send this answer?"

    # The next run's input resumes the interrupted graph, as a command or as plain input.
    resumed = run(4, {}, _next_state(third.saved), command={"resume": "yes"})
    assert resumed.saved["values"]["reviewed"] == "yes" and not resumed.saved["interrupts"]
    assert resumed.saved["values"]["messages"][-1]["content"] == "Reviewed: yes"
    plain = run(5, {"answer": "no"}, _next_state(third.saved))
    assert plain.saved["values"]["reviewed"] == "no"
    assert len(plain.saved["values"]["messages"]) == 7


PLAIN = """
    from crewyard_runtime import thread

    def helper(inputs):
        seen = thread.values().get("seen", [])
        thread.update(seen=[*seen, inputs["word"]])
        return {"count": len(seen) + 1}

    def convention(inputs):
        seen = inputs["thread"]["values"].get("seen", [])
        return {"thread": {"values": {"seen": [*seen, inputs["word"]]}}}

    def untouched(inputs):
        return {"id": inputs["thread"]["id"]}
"""


def test_plain_crews_leave_their_state_by_helper_or_by_output(
    tmp_path: Path, crew_module: Callable[[str, str], Path]
):
    folder = crew_module("crew", PLAIN)
    for entry in ("crew:helper", "crew:convention"):
        state: dict[str, Any] = {"values": {"seen": ["a"]}}
        done = run_runtime_in_thread(tmp_path / entry, entry, "python", folder, {"word": "b"}, state=state)
        assert done.saved is not None, done.run.error
        assert done.saved["values"] == {"seen": ["a", "b"]}
    same = run_runtime_in_thread(
        tmp_path / "u", "crew:untouched", "python", folder, {}, state={"values": {"k": 1}}
    )
    assert same.run.result == {"id": "thr_test"} and same.saved["values"] == {"k": 1}


def test_a_large_state_travels_in_pieces(tmp_path: Path, crew_module: Callable[[str, str], Path]):
    folder = crew_module(
        "big",
        "from crewyard_runtime import thread\n\ndef run(i):\n"
        "    thread.update(text='é' * 300_000)\n    return 1\n",
    )
    done = run_runtime_in_thread(tmp_path, "big:run", "python", folder, {}, state={})
    assert done.saved is not None and len(done.saved["values"]["text"]) == 300_000
    assert any(m["t"] == "request" and m["op"] == "blob.append" for m in done.run.messages)
