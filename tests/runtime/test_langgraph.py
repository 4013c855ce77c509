"""Real LangGraph graphs through ``python -m crewyard_runtime``, against the fake LLM on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from crewyard.testing import FakeLLM, RuntimeRun, run_runtime

AGENT = Path(__file__).resolve().parents[2] / "examples" / "langgraph-agent"
CrewModule = Callable[[str, str], Path]

# The prebuilt ReAct loop: a streaming ChatOpenAI (so the fake LLM answers with SSE chunks,
# tool-call deltas included) and a ToolNode, one graph with a working tool, one with a failing one.
TOOL_GRAPHS = """
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI
    from langgraph.graph import START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition


    @tool
    def add(a: int, b: int) -> int:
        \"\"\"Add two integers.\"\"\"
        return a + b


    @tool
    def explode(reason: str) -> str:
        \"\"\"Fails on purpose.\"\"\"
        raise ValueError(f"exploded: {reason}")


    def build(tools):
        model = ChatOpenAI(model="gpt-4o-mini", streaming=True).bind_tools(tools)

        def agent(state: MessagesState) -> dict:
            return {"messages": [model.invoke(state["messages"])]}

        builder = StateGraph(MessagesState)
        builder.add_node("agent", agent)
        builder.add_node("tools", ToolNode(tools))
        builder.add_edge(START, "agent")
        builder.add_conditional_edges("agent", tools_condition)
        builder.add_edge("tools", "agent")
        return builder.compile()


    graph = build([add])
    failing_graph = build([explode])
"""


@pytest.fixture(scope="module")
def agent_llm() -> Iterator[FakeLLM]:
    with FakeLLM() as llm:
        yield llm


@pytest.fixture(scope="module")
def agent_run(tmp_path_factory: pytest.TempPathFactory, agent_llm: FakeLLM) -> RuntimeRun:
    return run_runtime(
        tmp_path_factory.mktemp("agent"),
        "agent.graph:graph",
        "langgraph",
        AGENT,
        {"topic": "tool calls"},
        llm=agent_llm,
    )


def test_nodes_are_tasks_and_tool_calls_are_tool_events(agent_run: RuntimeRun) -> None:
    assert agent_run.returncode == 0, agent_run.stderr[-3000:]
    assert [k for k in agent_run.kinds if k != "log"] == [
        "task.started",
        "tool.called",
        "tool.result",
        "task.completed",
        "task.started",
        "task.completed",
    ]
    assert [e["task"] for e in agent_run.of_type("task.started")] == ["research", "write"]
    assert agent_run.of_type("tool.called") == [
        {
            "tool": "search_notes",
            "input": {"query": "Research tool calls: list the relevant facts from the notes."},
            "agent": "research",
        }
    ]
    assert agent_run.of_type("tool.result")[0]["output"].startswith("[Tool calls] Chat models request tools")
    write_done = agent_run.of_type("task.completed")[1]
    assert write_done["task"] == "write"
    assert write_done["output"]["report"].startswith("Fake LLM answer about: Write a report about tool calls")


def test_output_is_the_final_state_with_messages_as_dicts(agent_run: RuntimeRun) -> None:
    state = agent_run.result
    assert set(state) == {"topic", "messages", "report"}
    assert [m["role"] for m in state["messages"]] == ["user", "assistant", "tool", "assistant", "assistant"]
    call = state["messages"][1]["tool_calls"][0]
    assert call["name"] == "search_notes"
    assert state["messages"][2]["tool_call_id"] == call["id"]
    assert "Tool result used: [Tool calls]" in state["messages"][3]["content"]
    assert (agent_run.artifacts / "report.md").read_text(encoding="utf-8") == state["report"]


def test_the_model_saw_the_tool_and_its_result(agent_llm: FakeLLM, agent_run: RuntimeRun) -> None:
    requests = agent_llm.chat_requests()
    assert [r.tool_names for r in requests] == [["search_notes"], ["search_notes"], []]
    assert [m["role"] for m in requests[1].body["messages"]] == ["system", "user", "assistant", "tool"]


def test_toolnode_with_a_streaming_model(tmp_path: Path, fake_llm: FakeLLM, crew_module: CrewModule) -> None:
    folder = crew_module("tool_graphs", TOOL_GRAPHS)
    run = run_runtime(
        tmp_path,
        "tool_graphs:graph",
        "langgraph",
        folder,
        {"messages": [{"role": "user", "content": "add them"}]},
        llm=fake_llm,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert [k for k in run.kinds if k != "log"] == [
        "task.started",
        "task.completed",  # agent asks for the tool
        "task.started",
        "tool.called",
        "tool.result",
        "task.completed",  # tools runs it
        "task.started",
        "task.completed",  # agent answers
    ]
    assert [e["task"] for e in run.of_type("task.started")] == ["agent", "tools", "agent"]
    assert run.of_type("tool.called") == [{"tool": "add", "input": {"a": 3, "b": 3}, "agent": "tools"}]
    assert run.of_type("tool.result") == [{"tool": "add", "output": "6"}]
    messages = run.result["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]
    assert messages[-1]["content"] == "Fake LLM answer about: add them\nTool result used: 6"


def test_a_failing_tool_is_a_tool_error_and_fails_the_run(
    tmp_path: Path, fake_llm: FakeLLM, crew_module: CrewModule
) -> None:
    folder = crew_module("tool_graphs", TOOL_GRAPHS)
    run = run_runtime(
        tmp_path,
        "tool_graphs:failing_graph",
        "langgraph",
        folder,
        {"messages": [{"role": "user", "content": "blow up"}]},
        llm=fake_llm,
    )
    assert run.returncode == 1
    assert run.of_type("tool.error") == [{"tool": "explode", "error": "ValueError: exploded: blow up"}]
    assert run.error is not None and run.error["message"] == "ValueError: exploded: blow up"
    assert any(m["level"] == "error" and "node 'tools' failed" in m["message"] for m in run.logs)


def test_missing_api_key_fails_with_a_message_naming_it(tmp_path: Path, fake_llm: FakeLLM) -> None:
    run = run_runtime(
        tmp_path,
        "agent.graph:graph",
        "langgraph",
        AGENT,
        {"topic": "x"},
        llm=fake_llm,
        drop=("OPENAI_API_KEY",),
    )
    assert run.returncode == 1 and run.error is not None
    assert run.error["message"].startswith("MissingEnvironmentVariable: OPENAI_API_KEY is not set")
    assert run.of_type("task.started") == [{"task": "research"}]


def test_an_uncompiled_graph_with_async_nodes(tmp_path: Path, crew_module: CrewModule) -> None:
    folder = crew_module(
        "async_graph",
        """
        import asyncio
        from typing import TypedDict

        from langgraph.graph import END, START, StateGraph


        class State(TypedDict):
            n: int


        async def double(state: State) -> dict:
            await asyncio.sleep(0)
            return {"n": state["n"] * 2}


        builder = StateGraph(State)
        builder.add_node("double", double)
        builder.add_edge(START, "double")
        builder.add_edge("double", END)
        """,
    )
    run = run_runtime(tmp_path, "async_graph:builder", "langgraph", folder, {"n": 21})
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.events == [
        {"t": "event", "type": "task.started", "data": {"task": "double"}},
        {"t": "event", "type": "task.completed", "data": {"task": "double", "output": {"n": 42}}},
    ]
    assert run.result == {"n": 42}
