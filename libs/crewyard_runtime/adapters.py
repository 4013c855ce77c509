"""Framework adapters: turn an entrypoint object into a call with the run's input.

- python: any callable taking the input dict (a coroutine function is awaited).
- crewai: a ``@CrewBase`` class (instantiated, ``.crew().kickoff(inputs=…)``), a ``Crew``
  (``kickoff(inputs=…)``) or a callable.
- langgraph: a compiled graph (``invoke(input)``) or a callable.
Outputs are made JSON-friendly here; framework event hooks live in their own modules.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import sys
from typing import Any


class EntrypointError(Exception):
    pass


def resolve(entrypoint: str) -> Any:
    module_name, _, attr = entrypoint.partition(":")
    if not module_name or not attr:
        raise EntrypointError(f"entrypoint {entrypoint!r} must look like 'package.module:attribute'")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise EntrypointError(f"module {module_name!r} has no attribute {attr!r}") from None
    return obj


def _await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return asyncio.run(_coro(value))
    return value


async def _coro(value: Any) -> Any:
    return await value


def to_output(value: Any) -> Any:
    """CrewAI's CrewOutput → {raw, json, tasks}; pydantic models → dicts; else as is."""
    raw = getattr(value, "raw", None)
    if isinstance(raw, str) and hasattr(value, "tasks_output"):
        out: dict[str, Any] = {"raw": raw}
        json_dict = getattr(value, "json_dict", None)
        if json_dict:
            out["json"] = json_dict
        pyd = getattr(value, "pydantic", None)
        if pyd is not None and hasattr(pyd, "model_dump"):
            out["json"] = pyd.model_dump()
        return out
    if hasattr(value, "model_dump"):
        return value.model_dump()
    return value


def call(obj: Any, payload: dict[str, Any]) -> Any:
    if inspect.isclass(obj):
        instance = obj()
        if hasattr(instance, "crew") and callable(instance.crew):
            return instance.crew().kickoff(inputs=payload)
        obj = instance
    if hasattr(obj, "kickoff") and callable(obj.kickoff):
        return obj.kickoff(inputs=payload)
    if hasattr(obj, "invoke") and callable(obj.invoke) and not inspect.isfunction(obj):
        return obj.invoke(payload)
    if callable(obj):
        return obj(payload)
    raise EntrypointError(f"entrypoint object {obj!r} is not callable and has no kickoff() or invoke()")


def run_entrypoint(entrypoint: str, framework: str, payload: dict[str, Any]) -> Any:
    obj = resolve(entrypoint)
    return to_output(_await(call(obj, payload)))
