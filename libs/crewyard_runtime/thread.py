"""A thread run's state, for crews of any framework (LangGraph graphs need none of this: the
platform is their checkpointer, see :mod:`.langgraph_threads`).

    from crewyard_runtime import thread

    def run(inputs):
        history = thread.values().get("messages", [])
        reply = answer(history, inputs["message"])
        thread.update(messages=[*history, {"role": "user", "content": inputs["message"]},
                                {"role": "assistant", "content": reply}])
        return {"reply": reply}

The convention, without this module: a thread run's input carries ``thread`` =
``{"id", "values"}`` (the state the run starts from), and an output object with
``thread: {"values": {…}}`` sets the state the run leaves. When the crew does neither, the
state stays as it was. The state is kept only if the run succeeds.

Outside a platform run (a test, local development) the state lives in memory only.
"""

from __future__ import annotations

import copy
from typing import Any

from . import _protocol

_start: dict[str, Any] | None = None
_loaded: dict[str, Any] | None = None
_values: dict[str, Any] | None = None
_changed = False


def thread_id() -> str | None:
    """The thread this run runs in (None: not a thread run)."""
    return str(_start["id"]) if _start else None


def values() -> dict[str, Any]:
    """The thread's state (a copy: change it with :func:`update` or :func:`replace`)."""
    global _values
    if _values is None:
        _values = dict(_load().get("values") or {})
    return copy.deepcopy(_values)


def update(changes: dict[str, Any] | None = None, /, **more: Any) -> dict[str, Any]:
    """Set some keys of the state (the others stay); returns the new state."""
    global _values, _changed
    state = values()
    state.update(changes or {}, **more)
    _values, _changed = state, True
    return copy.deepcopy(state)


def replace(state: dict[str, Any]) -> None:
    """Set the whole state."""
    global _values, _changed
    if not isinstance(state, dict):
        raise TypeError("a thread's state is a dict")
    _values, _changed = copy.deepcopy(state), True


# -- used by the runtime itself --


def begin(start: dict[str, Any] | None) -> None:
    global _start, _loaded, _values, _changed
    _start, _loaded, _values, _changed = start, None, None, False


def running() -> bool:
    return _start is not None


def command() -> dict[str, Any] | None:
    value = (_start or {}).get("command")
    return value if isinstance(value, dict) else None


def state() -> dict[str, Any]:
    """What ``thread.get`` answered: values, checkpoint, interrupted, interrupts, metadata."""
    return _load()


def _load() -> dict[str, Any]:
    global _loaded
    if _loaded is None:
        if _start is not None and _protocol.active():
            _loaded = dict(_protocol.request("thread.get", {}) or {})
        else:
            _loaded = {"values": {}}
    return _loaded


def final_values(output: Any) -> dict[str, Any] | None:
    """The state the run leaves: set with the helper, else an output's ``thread.values``, else
    None (unchanged)."""
    if _changed:
        return values()
    if isinstance(output, dict) and isinstance(output.get("thread"), dict):
        left = output["thread"].get("values")
        if isinstance(left, dict):
            return left
    return None


def save(state: dict[str, Any], *, checkpoint: Any = None, interrupts: list[Any] | None = None) -> None:
    """Hand the state the run leaves to the platform (kept if the run succeeds)."""
    if _start is None or not _protocol.active():
        return
    _protocol.request(
        "thread.save", {"values": state, "checkpoint": checkpoint, "interrupts": interrupts or []}
    )
