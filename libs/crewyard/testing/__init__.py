"""Helpers for tests and demos that run real crews without a real LLM.

``FakeLLM`` (``fakellm``) is an OpenAI-compatible chat-completions server on loopback with
deterministic replies, good enough for CrewAI (native tool calling and the ReAct text format)
and LangChain / LangGraph (``ChatOpenAI``, streaming included). Start it from a fixture or from
the command line::

    python -m crewyard.testing.fakellm --port 8765

``run_runtime`` (``runtime``) runs ``python -m crewyard_runtime`` the way a runner does and
parses what it says. Modules that start whole platforms are imported from their own paths.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .fakellm import FakeLLM, RecordedRequest, reply_for
    from .runtime import RuntimeRun, run_runtime, write_module

__all__ = ["FakeLLM", "RecordedRequest", "RuntimeRun", "reply_for", "run_runtime", "write_module"]
_HOMES = {
    "FakeLLM": "fakellm",
    "RecordedRequest": "fakellm",
    "reply_for": "fakellm",
    "RuntimeRun": "runtime",
    "run_runtime": "runtime",
    "write_module": "runtime",
}


def __getattr__(name: str) -> Any:
    # Lazy, so ``python -m crewyard.testing.fakellm`` does not import the module twice.
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
