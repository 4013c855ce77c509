"""LangGraph graphs in a thread: the platform is the graph's checkpointer.

A graph written for LangGraph Platform is compiled without a checkpointer; here it runs with one
(an in-memory saver, like the platform's own) that starts from the thread's latest checkpoint —
LangGraph's full checkpoint as its own serializer wrote it, pending writes included, so reducers
keep accumulating (``messages``) and an ``interrupt()`` resumes. When the graph stops (done, or
waiting at an interrupt) its latest checkpoint goes back to the platform: one checkpoint per run.

What a run passes to the graph: ``command`` (``{"resume": …}``, as LangGraph Platform takes it)
as a ``Command``; else, on an interrupted thread, the input as the resume value; else the input
(with the thread's initial values under it on its first run).
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from . import thread
from .langgraph_hooks import _needs_async, jsonable, make_handler

_COMMAND_KEYS = ("resume", "update", "goto")


def _config(thread_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}


def _restore(saver: Any, thread_id: str, stored: dict[str, Any]) -> None:
    data = saver.serde.loads_typed((stored["serde"], base64.b64decode(stored["data"])))
    checkpoint = data["checkpoint"]
    config = saver.put(_config(thread_id), checkpoint, data["metadata"], dict(checkpoint["channel_versions"]))
    by_task: dict[str, list[tuple[str, Any]]] = {}
    for task_id, channel, value in data.get("pending_writes") or []:
        by_task.setdefault(task_id, []).append((channel, value))
    for task_id, writes in by_task.items():
        saver.put_writes(config, writes, task_id)


def _dump(saver: Any, thread_id: str) -> dict[str, Any] | None:
    latest = saver.get_tuple(_config(thread_id))
    if latest is None:
        return None
    kind, data = saver.serde.dumps_typed(
        {
            "checkpoint": latest.checkpoint,
            "metadata": latest.metadata,
            "pending_writes": [list(w) for w in latest.pending_writes or []],
        }
    )
    return {
        "format": "langgraph",
        "serde": kind,
        "data": base64.b64encode(data).decode(),
        "checkpoint_id": latest.checkpoint.get("id"),
    }


def run(graph: Any, payload: dict[str, Any]) -> Any:
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.types import Command

    thread_id = thread.thread_id() or "crewyard"
    state = thread.state()
    saver = InMemorySaver()
    if state.get("checkpoint"):
        _restore(saver, thread_id, state["checkpoint"])
    compiled = graph if hasattr(graph, "invoke") else graph.compile()
    bound = compiled.copy(update={"checkpointer": saver})
    command = thread.command()
    if command is not None:
        arg: Any = Command(**{k: v for k, v in command.items() if k in _COMMAND_KEYS})
    elif state.get("interrupted"):
        arg = Command(resume=payload)
    elif not state.get("checkpoint") and state.get("values"):
        arg = {**state["values"], **payload}
    else:
        arg = payload
    config = {**_config(thread_id), "callbacks": [make_handler()]}
    if _needs_async(bound):
        result = asyncio.run(bound.ainvoke(arg, config=config))
    else:
        result = bound.invoke(arg, config=config)
    snapshot = bound.get_state(_config(thread_id))
    interrupts = [
        {"value": jsonable(getattr(i, "value", i)), "id": getattr(i, "id", None)}
        for i in getattr(snapshot, "interrupts", ()) or ()
    ]
    thread.save(jsonable(snapshot.values), checkpoint=_dump(saver, thread_id), interrupts=interrupts)
    return jsonable(result)
