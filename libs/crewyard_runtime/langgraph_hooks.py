"""LangGraph inside a run: node and tool activity as run events, the final state as output.

A compiled graph is invoked with the run's input as its initial state and a LangChain callback
handler in its config (``langchain_core.callbacks.BaseCallbackHandler``), which sees:

- each node run (a chain run tagged ``graph:step:N`` whose name is its ``langgraph_node``) →
  ``task.started`` / ``task.completed`` with ``task`` = node name;
- each tool run (``ToolNode`` or a tool invoked inside a node) → ``tool.called`` /
  ``tool.result`` / ``tool.error``, with ``agent`` = the node that ran it;
- each chat-model call → a debug ``log`` line.

Callbacks rather than ``stream(stream_mode="tasks")``: stream chunks are yielded only after a
node finishes when LangGraph runs it inline, so a tool call inside the node would be reported
before its ``task.started``; callbacks fire on the executing thread, in order.

The output is the final state made JSON-friendly (:func:`jsonable`): messages become
``{"role", "content"}`` dicts (plus ``tool_calls`` / ``tool_call_id`` / ``name`` when present).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from typing import Any
from uuid import UUID

from . import _protocol

_ROLES = {
    "human": "user",
    "ai": "assistant",
    "system": "system",
    "tool": "tool",
    "function": "function",
    "HumanMessageChunk": "user",
    "AIMessageChunk": "assistant",
}
# Raised by LangGraph to steer control flow (interrupts, Command(goto=...) to a parent graph):
# the node did not fail.
_CONTROL_FLOW = {"GraphInterrupt", "NodeInterrupt", "ParentCommand", "GraphBubbleUp"}
_MAX_TEXT = 16_000


def is_graph(obj: Any) -> bool:
    """A compiled LangGraph graph (``Pregel``), or a ``StateGraph`` still to be compiled."""
    if hasattr(obj, "compile") and not hasattr(obj, "invoke"):
        return hasattr(obj, "add_node")
    return callable(getattr(obj, "invoke", None)) and hasattr(obj, "get_graph") and hasattr(obj, "stream")


def _message(msg: Any) -> dict[str, Any]:
    kind = getattr(msg, "type", "")
    out: dict[str, Any] = {"role": _ROLES.get(kind, kind), "content": jsonable(msg.content)}
    tool_calls = getattr(msg, "tool_calls", None)
    if tool_calls:
        out["tool_calls"] = [
            {"id": c.get("id"), "name": c.get("name"), "args": jsonable(c.get("args"))} for c in tool_calls
        ]
    for attr in ("tool_call_id", "name"):
        value = getattr(msg, attr, None)
        if value:
            out[attr] = value
    if getattr(msg, "status", None) == "error":
        out["status"] = "error"
    return out


def _is_message(value: Any) -> bool:
    return any(cls.__name__ == "BaseMessage" for cls in type(value).__mro__)


def jsonable(value: Any) -> Any:
    """A JSON-friendly copy of a LangGraph state or node update."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if _is_message(value):
        return _message(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if hasattr(value, "model_dump"):
        return jsonable(value.model_dump(mode="json"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if type(value).__name__ == "Command":  # a node's Command(update=..., goto=...)
        return {
            "update": jsonable(getattr(value, "update", None)),
            "goto": jsonable(getattr(value, "goto", None)),
        }
    return str(value)


def _clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _MAX_TEXT:
        return value[:_MAX_TEXT] + f"… ({len(value) - _MAX_TEXT} more characters)"
    return value


def _send_event(kind: str, **data: Any) -> None:
    _protocol.send({"t": "event", "type": kind, "data": {k: _clip(v) for k, v in data.items()}})


def _send_log(message: str, level: str) -> None:
    _protocol.send({"t": "log", "level": level, "message": message, "stream": "langgraph"})


def _tool_input(input_str: str, inputs: Any) -> Any:
    if inputs is not None:
        return jsonable(inputs)
    try:
        return json.loads(input_str)
    except ValueError:
        return input_str


def make_handler() -> Any:
    """A fresh callback handler (LangChain is imported only when a graph runs)."""
    from langchain_core.callbacks import BaseCallbackHandler

    class RunEvents(BaseCallbackHandler):
        raise_error = False  # reporting must never break the crew
        run_inline = True  # keep events in the order the graph produced them

        def __init__(self) -> None:
            self.nodes: dict[UUID, str] = {}
            self.tools: dict[UUID, str] = {}

        def on_chain_start(
            self,
            serialized: Any,
            inputs: Any,
            *,
            run_id: UUID,
            tags: list[str] | None = None,
            metadata: dict[str, Any] | None = None,
            **kwargs: Any,
        ) -> None:
            node = (metadata or {}).get("langgraph_node")
            name = kwargs.get("name") or (serialized or {}).get("name")
            is_step = any(t.startswith("graph:step:") for t in tags or [])
            if node and name == node and is_step and not str(node).startswith("__"):
                self.nodes[run_id] = str(node)
                _send_event("task.started", task=str(node))

        def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
            node = self.nodes.pop(run_id, None)
            if node is not None:
                _send_event("task.completed", task=node, output=jsonable(outputs))

        def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
            node = self.nodes.pop(run_id, None)
            if node is None:
                return
            if type(error).__name__ in _CONTROL_FLOW:
                _send_event("task.completed", task=node)
            else:
                _send_log(f"node {node!r} failed: {type(error).__name__}: {error}", "error")

        def on_tool_start(
            self,
            serialized: Any,
            input_str: str,
            *,
            run_id: UUID,
            metadata: dict[str, Any] | None = None,
            inputs: Any = None,
            **kwargs: Any,
        ) -> None:
            name = str(kwargs.get("name") or (serialized or {}).get("name") or "tool")
            self.tools[run_id] = name
            node = (metadata or {}).get("langgraph_node")
            _send_event(
                "tool.called",
                tool=name,
                input=_tool_input(input_str, inputs),
                agent=str(node) if node else None,
            )

        def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
            name = self.tools.pop(run_id, "tool")
            content = getattr(output, "content", output) if _is_message(output) else output
            _send_event("tool.result", tool=name, output=jsonable(content))

        def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
            name = self.tools.pop(run_id, "tool")
            _send_event("tool.error", tool=name, error=f"{type(error).__name__}: {error}")

        def on_chat_model_start(
            self,
            serialized: Any,
            messages: Any,
            *,
            run_id: UUID,
            metadata: dict[str, Any] | None = None,
            **kwargs: Any,
        ) -> None:
            model = (metadata or {}).get("ls_model_name") or "model"
            node = (metadata or {}).get("langgraph_node")
            _send_log(f"LLM call to {model}" + (f" ({node})" if node else ""), "debug")

        def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
            usage = (getattr(response, "llm_output", None) or {}).get("token_usage") or {}
            total = usage.get("total_tokens") if isinstance(usage, dict) else None
            _send_log("LLM call completed" + (f", {total} tokens" if total else ""), "debug")

        def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
            _send_log(f"LLM call failed: {type(error).__name__}: {error}", "error")

    return RunEvents()


def _needs_async(graph: Any) -> bool:
    """True when some node only has an async implementation (sync ``invoke`` would fail)."""
    for node in (getattr(graph, "nodes", None) or {}).values():
        bound = getattr(node, "bound", None)
        if bound is not None and getattr(bound, "func", True) is None and getattr(bound, "afunc", None):
            return True
    return False


def run(graph: Any, payload: dict[str, Any]) -> Any:
    if not hasattr(graph, "invoke"):
        graph = graph.compile()
    # thread_id lets graphs compiled with a checkpointer run; without one it is ignored.
    config: dict[str, Any] = {
        "callbacks": [make_handler()],
        "configurable": {"thread_id": os.environ.get("CREWYARD_RUN_ID") or "crewyard"},
    }
    if _needs_async(graph):
        state = asyncio.run(graph.ainvoke(payload, config=config))
    else:
        state = graph.invoke(payload, config=config)
    return jsonable(state)
