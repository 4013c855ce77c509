"""Framework adapters: turn an entrypoint object into a call with the run's input.

- python: any callable taking the input dict (a coroutine function is awaited).
- crewai: a ``@CrewBase`` class (instantiated, ``.crew().kickoff(inputs=…)``), a ``Crew``
  (``kickoff(inputs=…)``), a Flow or a callable — run with CrewAI's event bus hooked
  (:mod:`.crewai_hooks`).
- langgraph: a compiled graph (``invoke(input)``, node/tool callbacks hooked, see
  :mod:`.langgraph_hooks`) or a callable.

Outputs are made JSON-friendly here. Failures a user can fix (a wrong entrypoint, a package
missing from requirements.txt, an unset API key) are raised as :class:`RunError` subclasses whose
names and messages read well on one line ("MissingEnvironmentVariable: OPENAI_API_KEY is not
set …"); the original exception stays chained so the traceback still shows the cause.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import re
import sys
from typing import Any


class RunError(Exception):
    """A failure of the run explained for the user; the cause is chained."""


class EntrypointError(RunError):
    """The entrypoint cannot be imported or does not name a usable object."""


class MissingDependency(RunError):
    """The crew imports a package that is not installed."""


class MissingEnvironmentVariable(RunError):
    """The crew needs an environment variable (an API key, usually) that is not set."""


# Names that crews read from the environment and that error messages mention when unset.
_ENV_NAME_RE = re.compile(
    r"\b([A-Z][A-Z0-9]*_(?:API_KEY|API_TOKEN|TOKEN|SECRET|ACCESS_KEY|BASE_URL|API_BASE))\b"
)


def _import(module_name: str) -> Any:
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise EntrypointError(
                f"entrypoint module {module_name!r} not found: {exc}"
                " (is the entrypoint relative to the crew's root folder?)"
            ) from exc
        top = missing.split(".")[0] or "?"
        raise MissingDependency(
            f"module {top!r} is not installed (imported by {module_name!r});"
            f" add the package that provides it to requirements.txt"
        ) from exc
    except ImportError as exc:
        raise EntrypointError(f"importing entrypoint module {module_name!r} failed: {exc}") from exc


def resolve(entrypoint: str) -> Any:
    module_name, _, attr = entrypoint.partition(":")
    if not module_name or not attr:
        raise EntrypointError(f"entrypoint {entrypoint!r} must look like 'package.module:attribute'")
    module = _import(module_name)
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            defined = _defined_names(module)
            hint = f"; it defines: {', '.join(defined[:12])}" if defined else ""
            raise EntrypointError(f"module {module_name!r} has no attribute {attr!r}{hint}") from None
    return obj


def _defined_names(module: Any) -> list[str]:
    """Public names the module itself defines (not what it imported), for "did you mean" hints."""
    names = []
    for name, value in vars(module).items():
        if name.startswith("_") or inspect.ismodule(value) or type(value).__name__ == "_Feature":
            continue
        origin = (
            getattr(value, "__module__", None) if inspect.isclass(value) or inspect.isroutine(value) else None
        )
        if origin in (None, module.__name__):
            names.append(name)
    return sorted(names)


def _await(value: Any) -> Any:
    if inspect.isawaitable(value):
        import asyncio  # imported only when needed: it costs ~30 ms of every run's start

        return asyncio.run(_coro(value))
    return value


async def _coro(value: Any) -> Any:
    return await value


def to_output(value: Any) -> Any:
    """CrewAI's CrewOutput → {raw, json?}; pydantic models → dicts; else as is."""
    raw = getattr(value, "raw", None)
    if isinstance(raw, str) and hasattr(value, "tasks_output"):
        out: dict[str, Any] = {"raw": raw}
        json_dict = getattr(value, "json_dict", None)
        if json_dict:
            out["json"] = json_dict
        pyd = getattr(value, "pydantic", None)
        if pyd is not None and hasattr(pyd, "model_dump"):
            out["json"] = pyd.model_dump(mode="json")
        return out
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
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


def explain(exc: BaseException) -> RunError | None:
    """A user-facing error for a known cause buried in ``exc`` (or its causes), else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, RunError):
            return None
        for name in _ENV_NAME_RE.findall(str(current)):
            if not os.environ.get(name):
                return MissingEnvironmentVariable(
                    f"{name} is not set; set it for the project (crewyard env set {name}=…)"
                    f" — {type(current).__name__}: {str(current).splitlines()[0][:200]}"
                )
        current = current.__cause__ or current.__context__
    return None


class Loaded:
    """An entrypoint whose module (and framework) is imported, ready to be called."""

    def __init__(self, framework: str, obj: Any) -> None:
        self.framework = framework
        self.obj = obj


#: Modules imported only once a run is under way, imported at ``prepare`` instead for the
#: frameworks that use them, when the crew's environment has them: OpenAI's client and its API
#: resources (0.3 to 0.5 s of a CrewAI crew's first model call); what CrewAI's kickoff imports on
#: its first call (its hook contexts, the LLM response cache, rich's emoji table for the console
#: panels: 5 to 15 ms before the first task starts).
LAZY_MODULES = {
    "crewai": (
        "openai.resources.chat",
        "crewai.hooks.contexts",
        "crewai.hooks.dispatch",
        "crewai.llms.cache",
        "rich._emoji_codes",
    ),
    "langgraph": ("openai.resources.chat",),
}


def _import_lazy_modules(framework: str) -> None:
    import importlib.util

    for name in LAZY_MODULES.get(framework, ()):
        with contextlib.suppress(Exception):  # an optional speed-up: the run imports what it needs
            if importlib.util.find_spec(name.partition(".")[0]) is not None:
                importlib.import_module(name)


def load(entrypoint: str, framework: str) -> Loaded:
    """Import the crew's module and its framework (what ``ready`` promises); for a ``@CrewBase``
    class, build its Crew too. Everything here runs before the run's input exists — at warm-up,
    for a warm sandbox — so that ``start`` goes straight to the crew's work."""
    try:
        if framework == "crewai":
            from . import crewai_hooks

            crewai_hooks.prepare_environment()  # before the crew's module imports crewai
        obj = resolve(entrypoint)
        if framework == "crewai":
            obj = crewai_hooks.prebuild(obj)
        if framework == "langgraph":
            from . import langgraph_hooks  # noqa: F401 - imported now so that start is quick
        _import_lazy_modules(framework)
        return Loaded(framework, obj)
    except Exception as exc:
        better = explain(exc)
        if better is not None:
            raise better from exc
        raise


def invoke(loaded: Loaded, payload: dict[str, Any]) -> Any:
    """Call a loaded entrypoint with the run's input; the output made JSON-friendly."""
    try:
        return _invoke(loaded.framework, loaded.obj, payload)
    except Exception as exc:
        better = explain(exc)
        if better is not None:
            raise better from exc
        raise


def run_entrypoint(entrypoint: str, framework: str, payload: dict[str, Any]) -> Any:
    return invoke(load(entrypoint, framework), payload)


def _invoke(framework: str, obj: Any, payload: dict[str, Any]) -> Any:
    from . import thread

    if thread.running():
        return _in_thread(framework, obj, payload)
    return _plain(framework, obj, payload)


def _in_thread(framework: str, obj: Any, payload: dict[str, Any]) -> Any:
    """A thread run: LangGraph graphs check their state in and out themselves; other crews get
    the state in their input (``thread``) and leave it through the helper or their output."""
    from . import thread

    if framework == "langgraph":
        from . import langgraph_hooks

        if langgraph_hooks.is_graph(obj):
            from . import langgraph_threads

            return langgraph_threads.run(obj, payload)
    if "thread" not in payload:
        payload = {**payload, "thread": {"id": thread.thread_id(), "values": thread.values()}}
    output = _plain(framework, obj, payload)
    left = thread.final_values(output)
    thread.save(left if left is not None else thread.values())
    return output


def _plain(framework: str, obj: Any, payload: dict[str, Any]) -> Any:
    if framework == "crewai":
        from . import crewai_hooks

        return to_output(crewai_hooks.run(obj, lambda target: _await(call(target, payload))))
    if framework == "langgraph":
        from . import langgraph_hooks

        if langgraph_hooks.is_graph(obj):
            return langgraph_hooks.run(obj, payload)
        return langgraph_hooks.jsonable(_await(call(obj, payload)))
    return to_output(_await(call(obj, payload)))
