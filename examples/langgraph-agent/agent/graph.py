"""The graph: ``research`` asks the model, runs the tool calls it makes, then ``write`` reports.

Input: ``{"topic": "..."}`` (or ``{"messages": [{"role": "user", "content": "..."}]}``).
Output: the final state — the conversation, and ``report`` (also written to ``report.md`` in
the artifacts folder). The model is ``gpt-4o-mini`` by default (``OPENAI_MODEL``);
``ChatOpenAI`` reads ``OPENAI_API_KEY`` and ``OPENAI_BASE_URL`` from the environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AnyMessage, HumanMessage, SystemMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

NOTES = {
    "Agent graphs": "LangGraph models an agent as a graph of nodes that read and update a shared state.",
    "Tool calls": "Chat models request tools through tool calls; the results go back as tool messages.",
    "Checkpoints": "A checkpointer saves the state after every step, so a thread can be resumed later.",
    "Deployment": "Deployed graphs run isolated per run and stream node and tool events as they happen.",
}
MAX_TOOL_ROUNDS = 3  # a model that keeps asking for tools must not loop forever


class State(TypedDict, total=False):
    topic: str
    messages: Annotated[list[AnyMessage], add_messages]
    report: str


@tool
def search_notes(query: str) -> str:
    """Search the team's research notes; returns the notes that share words with the query."""
    words = {w.lower() for w in query.split() if len(w) > 2}
    hits = [
        f"[{title}] {text}" for title, text in NOTES.items() if words & set(f"{title} {text}".lower().split())
    ]
    return "\n".join(hits) or f"No notes mention {query!r}."


def _model() -> ChatOpenAI:
    return ChatOpenAI(model=os.environ.get("OPENAI_MODEL", "gpt-4o-mini"), temperature=0)


def _topic(state: State) -> str:
    if state.get("topic"):
        return state["topic"]
    humans = [m for m in state.get("messages", []) if isinstance(m, HumanMessage)]
    return str(humans[-1].content) if humans else "agent graphs"


def research(state: State) -> dict[str, Any]:
    topic = _topic(state)
    system = SystemMessage("You are a researcher. Always search the notes before answering.")
    question = HumanMessage(f"Research {topic}: list the relevant facts from the notes.")
    model = _model().bind_tools([search_notes])
    new: list[AnyMessage] = [question]
    reply = model.invoke([system, *new])
    for _ in range(MAX_TOOL_ROUNDS):
        if not reply.tool_calls:
            break
        new.append(reply)
        new += [search_notes.invoke(call) for call in reply.tool_calls]  # → ToolMessages
        reply = model.invoke([system, *new])
    return {"topic": topic, "messages": [*new, reply]}


def write(state: State) -> dict[str, Any]:
    findings = state["messages"][-1].content
    reply = _model().invoke(
        [
            SystemMessage("You write short markdown reports: a title, a summary, a few bullets."),
            HumanMessage(f"Write a report about {_topic(state)} from these findings:\n{findings}"),
        ]
    )
    report = str(reply.content)
    (_artifacts_dir() / "report.md").write_text(report, encoding="utf-8")
    return {"report": report, "messages": [reply]}


def _artifacts_dir() -> Path:
    # crewyard and Crewship both collect files from the artifacts folder.
    path = Path(os.environ.get("CREWYARD_ARTIFACTS_DIR") or "/app/artifacts")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:  # running locally, outside any platform
        path = Path.cwd()
    return path


builder = StateGraph(State)
builder.add_node("research", research)
builder.add_node("write", write)
builder.add_edge(START, "research")
builder.add_edge("research", "write")
builder.add_edge("write", END)
graph = builder.compile()
