"""CrewAI inside a run: offline-safe defaults, clean console output, and CrewAI's own events.

What this module does around ``kickoff``:

- **Environment defaults** (:func:`prepare_environment`, before the crew's module imports
  crewai): telemetry, tracing and the version check off, so a sandbox without internet never
  waits on an unreachable collector; ``NO_COLOR`` so rich renders plain text; a writable
  ``HOME`` because CrewAI keeps its storage under it. Values the project sets win.
- **Events**: handlers on CrewAI's event bus (``crewai.events.crewai_event_bus``, crewai 1.x
  event classes in ``crewai.events.types.*``) translate agent, task, tool and LLM activity into
  protocol messages (:func:`translate`, a pure function of the event's fields).
- **Console**: CrewAI's rich panels arrive on ``sys.stdout`` as plain text (no terminal, no
  colour); its ``Printer`` writes raw ANSI colour codes regardless, so they are stripped.
- **Output files**: a task's ``output_file`` is made to land in ``CREWYARD_ARTIFACTS_DIR``:
  CrewAI strips the leading ``/`` of absolute paths (``/app/artifacts/report.md`` would become
  ``app/artifacts/report.md`` under the working directory), so paths are re-rooted here.

Why async handlers: the bus runs *sync* handlers on a 10-thread pool, which can deliver
``task.started`` after ``agent.started``; async handlers are scheduled FIFO on the bus's single
event loop, and ours never await, so run events keep CrewAI's emission order. The bus is
flushed before the result is reported so no event trails the run's end.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from . import _protocol

ENV_DEFAULTS = {
    "CREWAI_DISABLE_TELEMETRY": "true",
    "CREWAI_DISABLE_TRACKING": "true",
    "OTEL_SDK_DISABLED": "true",
    "CREWAI_TRACING_ENABLED": "false",
    "CREWAI_DISABLE_VERSION_CHECK": "true",
    "NO_COLOR": "1",
}

# crewai 1.x event classes we translate, by module; names missing in another version are skipped.
_EVENT_CLASSES = {
    "crewai.events.types.agent_events": (
        "AgentExecutionStartedEvent",
        "AgentExecutionCompletedEvent",
        "AgentExecutionErrorEvent",
        "LiteAgentExecutionStartedEvent",
        "LiteAgentExecutionCompletedEvent",
        "LiteAgentExecutionErrorEvent",
    ),
    "crewai.events.types.task_events": ("TaskStartedEvent", "TaskCompletedEvent", "TaskFailedEvent"),
    "crewai.events.types.tool_usage_events": (
        "ToolUsageStartedEvent",
        "ToolUsageFinishedEvent",
        "ToolUsageErrorEvent",
        "ToolValidateInputErrorEvent",
        "ToolSelectionErrorEvent",
    ),
    "crewai.events.types.crew_events": (
        "CrewKickoffStartedEvent",
        "CrewKickoffCompletedEvent",
        "CrewKickoffFailedEvent",
    ),
    "crewai.events.types.llm_events": ("LLMCallStartedEvent", "LLMCallCompletedEvent", "LLMCallFailedEvent"),
}
_MAX_TEXT = 16_000  # event payloads are stored in the stream; keep one agent's essay from bloating it
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_FLUSH_TIMEOUT_S = 10.0


def prepare_environment() -> None:
    for key, value in ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    home = os.environ.get("HOME") or ""
    if not home or not os.access(home, os.W_OK):
        # A sandbox user often has no writable home; CrewAI writes its storage and settings there.
        with suppress(OSError):
            os.environ["HOME"] = tempfile.mkdtemp(prefix="crewyard-home-")


# ---------------------------------------------------------------------------------------------
# Translating events


def _clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _MAX_TEXT:
        return value[:_MAX_TEXT] + f"… ({len(value) - _MAX_TEXT} more characters)"
    return value


def _line(value: Any) -> str:
    """A role or task description as one clean line (YAML ``>`` blocks end with newlines)."""
    return " ".join(str(value or "").split())


def _task_text(task: Any, fallback: Any = None) -> str | None:
    if task is None:
        return _line(fallback) or None
    text = _line(getattr(task, "description", None) or getattr(task, "name", None))
    return text or _line(fallback) or None


def _agent_of(event: Any) -> str | None:
    agent = getattr(event, "agent", None)
    role = getattr(agent, "role", None) if agent is not None else None
    if role is None and isinstance(getattr(event, "agent_info", None), dict):
        role = event.agent_info.get("role")
    role = role or getattr(event, "agent_role", None)
    if role is None:
        task_agent = getattr(getattr(event, "task", None), "agent", None)
        role = getattr(task_agent, "role", None)
    return _line(role) or None


def _tool_input(args: Any) -> Any:
    if isinstance(args, str):
        try:
            return json.loads(args)
        except ValueError:
            return args
    return args


def _event(kind: str, **data: Any) -> dict[str, Any]:
    return {"t": "event", "type": kind, "data": {k: _clip(v) for k, v in data.items()}}


def _log(message: str, level: str = "info") -> dict[str, Any]:
    return {"t": "log", "level": level, "message": message, "stream": "crewai"}


def translate(event: Any) -> list[dict[str, Any]]:
    """Protocol messages for one CrewAI event (by its ``type`` tag); [] for the rest."""
    kind = getattr(event, "type", "")
    agent = _agent_of(event)
    task = getattr(event, "task", None)
    if kind in ("agent_execution_started", "lite_agent_execution_started"):
        return [
            _event(
                "agent.started",
                agent=agent or "agent",
                task=_task_text(task, getattr(event, "task_name", None)),
            )
        ]
    if kind in ("agent_execution_completed", "lite_agent_execution_completed"):
        return [_event("agent.completed", agent=agent or "agent", task=_task_text(task), output=event.output)]
    if kind in ("agent_execution_error", "lite_agent_execution_error"):
        return [_event("agent.error", agent=agent or "agent", error=str(event.error))]
    if kind == "task_started":
        return [_event("task.started", task=_task_text(task, event.task_name) or "task", agent=agent)]
    if kind == "task_completed":
        output = event.output
        return [
            _event(
                "task.completed",
                task=_task_text(task, getattr(output, "description", None)) or "task",
                agent=agent or _line(getattr(output, "agent", None)) or None,
                output=getattr(output, "raw", output),
            )
        ]
    if kind == "task_failed":
        return [_log(f"task failed: {_task_text(task, event.task_name) or 'task'}: {event.error}", "error")]
    if kind == "tool_usage_started":
        return [_event("tool.called", tool=event.tool_name, input=_tool_input(event.tool_args), agent=agent)]
    if kind == "tool_usage_finished":
        return [_event("tool.result", tool=event.tool_name, output=event.output)]
    if kind in ("tool_usage_error", "tool_validate_input_error", "tool_selection_error"):
        return [_event("tool.error", tool=event.tool_name, error=str(event.error))]
    crew = f"crew {event.crew_name}" if getattr(event, "crew_name", None) else "crew"
    if kind == "crew_kickoff_started":
        return [_log(f"{crew} started")]
    if kind == "crew_kickoff_completed":
        return [_log(f"{crew} completed ({getattr(event, 'total_tokens', 0)} tokens)")]
    if kind == "crew_kickoff_failed":
        return [_log(f"{crew} failed: {event.error}", "error")]
    if kind == "llm_call_started":
        return [_log(f"LLM call to {event.model} ({agent or 'no agent'})", "debug")]
    if kind == "llm_call_completed":
        usage = getattr(event, "usage", None) or {}
        total = usage.get("total_tokens") if isinstance(usage, dict) else None
        suffix = f", {total} tokens" if total else ""
        return [_log(f"LLM call to {event.model} completed{suffix}", "debug")]
    if kind == "llm_call_failed":
        return [_log(f"LLM call to {event.model} failed: {event.error}", "error")]
    return []


def _event_classes() -> list[type]:
    classes: list[type] = []
    for module_name, names in _EVENT_CLASSES.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        classes += [cls for name in names if isinstance(cls := getattr(module, name, None), type)]
    return classes


@contextmanager
def event_hooks() -> Iterator[None]:
    """Translate CrewAI's events into run events while the block runs."""
    try:
        from crewai.events import crewai_event_bus
    except ModuleNotFoundError as exc:
        from .adapters import MissingDependency

        raise MissingDependency(
            f"framework 'crewai' needs the crewai package ({exc}); add crewai to requirements.txt"
        ) from exc

    async def forward(source: Any, event: Any) -> None:
        # No await before sending: see the module doc for why ordering depends on it.
        for message in translate(event):
            _protocol.send(message)

    classes = _event_classes()
    for cls in classes:
        crewai_event_bus.on(cls)(forward)
    try:
        yield
    finally:
        crewai_event_bus.flush(timeout=_FLUSH_TIMEOUT_S)
        for cls in classes:
            crewai_event_bus.off(cls, forward)


# ---------------------------------------------------------------------------------------------
# Console and files


class _StripAnsi(io.TextIOBase):
    """Wraps the crew's stdout: CrewAI's ``Printer`` colours text with raw escape codes."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._inner.write(_ANSI_RE.sub("", text))
        return len(text)

    def flush(self) -> None:
        self._inner.flush()

    def isatty(self) -> bool:
        return False


@contextmanager
def plain_console() -> Iterator[None]:
    previous = sys.stdout
    sys.stdout = _StripAnsi(previous)
    try:
        yield
    finally:
        with suppress(Exception):
            sys.stdout.flush()
        sys.stdout = previous


def artifacts_root() -> Path:
    return Path(os.environ.get("CREWYARD_ARTIFACTS_DIR") or os.getcwd()).resolve()


def relocate_output_files(crew: Any, root: Path) -> None:
    """Point every task's ``output_file`` into ``root`` (see the module doc for why)."""
    for task in getattr(crew, "tasks", None) or []:
        path = getattr(task, "output_file", None)
        if not isinstance(path, str) or not path or "{" in path or os.path.isabs(path):
            continue  # templates keep their leading "/" and are interpolated by CrewAI at kickoff
        # Inside root once the "/" CrewAI dropped is restored: the user wrote /app/artifacts/….
        stripped_absolute = Path("/" + path)
        target = stripped_absolute if stripped_absolute.is_relative_to(root) else root / path
        task.output_file = str(target)
        if getattr(task, "create_directory", True) is not False:
            target.parent.mkdir(parents=True, exist_ok=True)


def _build(obj: Any) -> Any:
    """A ``@CrewBase`` class → its Crew (so output files can be fixed before kickoff)."""
    import inspect

    if inspect.isclass(obj):
        instance: Any = obj()
        if callable(getattr(instance, "crew", None)):
            return instance.crew()
        return instance
    return obj


def prebuild(obj: Any) -> Any:
    """At ``prepare``: a ``@CrewBase`` class built into its Crew already (its agents, tasks and
    model clients; 0.15 to 0.4 s), so that a run's start is its kickoff. Building needs no input
    (CrewAI interpolates the inputs at kickoff), and the Crew serves this process's one run."""
    with plain_console():
        built = _build(obj)
        prepare_executors(built)
        return built


def prepare_executors(crew: Any) -> None:
    """Give each agent of a Crew its executor before the run (no input needed).

    Kickoff makes one per agent that has none (``setup_agents``): a CrewAI executor is a Flow,
    and making one builds pydantic models at run time — most of the CPU between a crew's start and
    its first task in crewai 1.x (0.1 s of 0.15 s). An agent that has one gets it updated with the
    run's interpolated prompt, tools and task instead, as a second kickoff of the same Crew does.
    The agent is prepared here as ``setup_agents`` prepares it before it makes the executor
    (crew, function-calling model, step callback: the executor copies them), so the executor is
    the one kickoff would have made. Knowledge and skills are left to kickoff, which loads them.
    Only for a Crew whose agents look like crewai 1.x's; any surprise leaves kickoff to do it.
    """
    agents = getattr(crew, "agents", None)
    if not isinstance(agents, list) or not callable(getattr(crew, "kickoff", None)):
        return
    for agent in agents:
        if getattr(agent, "agent_executor", False) is not None:
            continue  # has one already (or is not an agent this knows)
        if not callable(getattr(agent, "create_agent_executor", None)):
            continue
        try:
            agent.crew = crew
            if not getattr(agent, "function_calling_llm", None):
                agent.function_calling_llm = getattr(crew, "function_calling_llm", None)
            if not getattr(agent, "step_callback", None):
                agent.step_callback = getattr(crew, "step_callback", None)
            agent.create_agent_executor()
        except Exception:
            with suppress(Exception):
                agent.agent_executor = None  # kickoff makes it as it always did


def run(obj: Any, invoke: Callable[[Any], Any]) -> Any:
    """Build the crew, hook events and console, and kick it off through ``invoke``."""
    with plain_console(), event_hooks():
        target = _build(obj)
        relocate_output_files(target, artifacts_root())
        return invoke(target)
