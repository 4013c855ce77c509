"""The graph: ``chat`` answers the conversation; a message asking for a review goes on to
``review``, which waits for a person (``interrupt()``) before it answers.

Written as for LangGraph Platform: compiled without a checkpointer (the platform brings one),
the conversation in ``messages`` with LangGraph's ``add_messages`` reducer, so each run in a
thread adds to what the earlier runs said. Input: ``{"messages": [{"role": "user", "content":
"…"}]}``. An interrupted thread is resumed by its next run: ``{"command": {"resume": "yes"}}``
or any input (which becomes the person's answer).
"""

from __future__ import annotations

import os
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import interrupt


class State(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    reviewed: str


def chat(state: State) -> dict[str, Any]:
    model = ChatOpenAI(model=os.environ.get("OPENAI_MODEL", "gpt-4o-mini"), temperature=0)
    return {"messages": [model.invoke(state["messages"])]}


def _wants_review(state: State) -> str:
    last_human = next((m for m in reversed(state["messages"]) if isinstance(m, HumanMessage)), None)
    return "review" if last_human is not None and "review" in str(last_human.content).lower() else END


def review(state: State) -> dict[str, Any]:
    answer = interrupt({"question": "Send this answer?", "draft": state["messages"][-1].content})
    if isinstance(answer, dict):
        answer = answer.get("answer", answer.get("decision", answer))
    return {"messages": [AIMessage(f"Reviewed: {answer}")], "reviewed": str(answer)}


builder = StateGraph(State)
builder.add_node("chat", chat)
builder.add_node("review", review)
builder.add_edge(START, "chat")
builder.add_conditional_edges("chat", _wants_review, ["review", END])
builder.add_edge("review", END)
graph = builder.compile()
