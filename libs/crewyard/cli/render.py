"""How events and records look in a terminal (rich), shared by every command.

The live run view follows the reference product's ``--stream`` layout::

    ▶ Run started: run_abc123
    ├─ [10:30:01] Starting crew execution
    ├─ [10:30:05] Tool: web_search("AI agents 2024")
    ├─ [10:30:46] Artifact: report.md (3.2 KB)
    ✅ Run completed in 45.2s

User-supplied text is always wrapped in :class:`rich.text.Text`, never parsed as rich markup, so a
log line containing ``[red]`` prints as is.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import click
import msgspec
from rich import box
from rich.console import Console
from rich.json import JSON
from rich.table import Table
from rich.text import Text

from crewyard import humanize
from crewyard.client import Run, SseMessage

RUN_TERMINAL = {"run.completed": "succeeded", "run.failed": "failed", "run.canceled": "canceled"}
STATUS_STYLES = {
    "pending": "yellow",
    "queued": "yellow",
    "building": "cyan",
    "running": "cyan",
    "succeeded": "green",
    "ready": "green",
    "failed": "red",
    "canceled": "magenta",
}


def make_console(*, stderr: bool = False) -> Console:
    # Built per command, not at import: rich decides colour and width when the console is made,
    # and the output stream may differ between invocations (tests, pipes, terminals).
    console = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Piped output has no width to respect: never squeeze tables into rich's default 80 columns.
        console.width = 200
    return console


def listing_table(*columns: str, wrap: tuple[str, ...] = ()) -> Table:
    """A listing in the CLI's style. Only the columns named in ``wrap`` may wrap: an id or a time
    folded over two lines can't be copied whole (scripts use ``--json`` and never parse tables)."""
    listing = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for column in columns:
        listing.add_column(column, no_wrap=column not in wrap)
    return listing


@dataclass(frozen=True, slots=True)
class StreamEvent:
    type: str
    data: dict[str, Any]
    seq: int | None = None
    time: datetime | None = None
    project: str | None = None
    aggregate_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


def decode_event(msg: SseMessage) -> StreamEvent:
    """The event envelope carried in an SSE message's ``data:`` (tolerant of partial envelopes)."""
    try:
        envelope = json.loads(msg.data)
    except (ValueError, RecursionError):  # not JSON, an endless number, nesting past the stack
        envelope = {"data": {"message": msg.data[:1000]}}
    if not isinstance(envelope, dict):
        envelope = {"data": {"value": envelope}}
    data = envelope.get("data", envelope.get("payload"))  # the reference's guide calls it "payload"
    if not isinstance(data, dict):
        data = {} if data is None else {"value": data}
    seq = stream_seq(msg.id)
    return StreamEvent(
        type=str(envelope.get("type") or msg.event),
        data=data,
        seq=seq,
        time=parse_time(envelope.get("time")),
        project=envelope.get("project"),
        aggregate_id=envelope.get("aggregate_id") or envelope.get("run_id") or envelope.get("deployment_id"),
        raw=envelope,
    )


def stream_seq(event_id: str | None) -> int | None:
    """An SSE id as the stream sequence it is, else None: ASCII digits only ("²" passes isdigit
    and fails int()), and not so many that int() refuses them."""
    if event_id is None or not (event_id.isascii() and event_id.isdigit()) or len(event_id) > 30:
        return None
    return int(event_id)


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def clock(when: datetime | None) -> str:
    return (when.astimezone() if when else datetime.now()).strftime("%H:%M:%S")


def local_time(value: Any) -> str:
    """An ISO timestamp from the API as local ``YYYY-MM-DD HH:MM:SS`` (as is when unparsable)."""
    when = parse_time(value)
    if when is None:
        return "" if value is None else str(value)
    return when.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def human_size(size: Any) -> str:
    return humanize.size(size) if isinstance(size, int | float) else "?"


def human_duration(ms: Any) -> str:
    if not isinstance(ms, int | float) or not math.isfinite(ms):
        return ""
    return humanize.duration(ms)


def short(value: Any, limit: int = 120) -> str:
    """A one-line rendering of a tool input/output, cut at ``limit`` characters."""
    return humanize.one_line(value, limit)


def tool_call(tool: str, args: Any) -> str:
    """``web_search("AI agents")`` / ``search(query="AI", k=3)``."""
    if args is None:
        return f"{tool}()"
    if isinstance(args, dict) and all(isinstance(k, str) for k in args):
        inner = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False, default=str)}" for k, v in args.items())
    else:
        inner = json.dumps(args, ensure_ascii=False, default=str)
    return f"{tool}({short(inner, 100)})"


def status_text(status: Any) -> Text:
    return Text(str(status or "?"), style=STATUS_STYLES.get(str(status), ""))


def describe(event: StreamEvent) -> Text | None:
    """One line saying what an activity event means (None for events with nothing to say)."""
    d, t = event.data, event.type
    agent = d.get("agent")
    if t == "log":
        return Text(str(d.get("message", "")), style=_log_style(d))
    if t == "agent.started":
        return Text(f"{agent} agent starting task" + (f": {d['task']}" if d.get("task") else ""))
    if t == "agent.completed":
        return Text(f"{agent} agent completed task" + (f": {d['task']}" if d.get("task") else ""))
    if t == "agent.error":
        return Text(f"{agent} agent error: {d.get('error', '')}", style="red")
    if t == "task.started":
        return Text(f"Task started: {d.get('task')}" + (f" ({agent})" if agent else ""))
    if t == "task.completed":
        return Text(f"Task completed: {d.get('task')}" + (f" ({agent})" if agent else ""))
    if t == "tool.called":
        return Text(f"Tool: {tool_call(str(d.get('tool', '?')), d.get('input'))}")
    if t == "tool.result":
        return Text(f"Tool result: {d.get('tool', '?')} → {short(d.get('output'))}", style="dim")
    if t == "tool.error":
        return Text(f"Tool error: {d.get('tool', '?')}: {d.get('error', '')}", style="red")
    if t == "artifact":
        size = f" ({human_size(d['size'])})" if "size" in d else ""
        return Text(f"Artifact: {d.get('name', '?')}{size}")
    if t == "run.queued":
        return Text("Queued, waiting for a runner", style="dim")
    if t == "run.started":
        return Text(f"Run started on the {d.get('backend', '?')} backend", style="dim")
    if t == "run.cancel_requested":
        return Text("Cancel requested", style="yellow")
    if t == "run.completed":
        return Text(f"Run completed in {human_duration(d.get('duration_ms'))}", style="green")
    if t == "run.failed":
        return Text(f"Run failed: {d.get('error_message', '')}", style="red")
    if t == "run.canceled":
        return Text("Run canceled", style="magenta")
    if t == "deployment.build.log":
        return Text(str(d.get("line", "")), style="dim")
    if t == "deployment.ready":
        return Text("Deployment ready" + (" (cached build)" if d.get("cached") else ""), style="green")
    if t == "deployment.failed":
        return Text(f"Build failed: {d.get('error_message', '')}", style="red")
    if t == "deployment.promoted":
        return Text("Deployment is now current", style="green")
    if t in ("env.set", "env.unset"):
        return Text(f"{t} {d.get('key', '')}")
    return None


def _log_style(data: dict[str, Any]) -> str:
    level = str(data.get("level", "info")).lower()
    if level in ("error", "critical"):
        return "red"
    if level in ("warning", "warn"):
        return "yellow"
    return "dim" if data.get("stream") == "stderr" else ""


class RunView:
    """Renders one run's event stream live; ``outcome`` is set by the terminal event."""

    def __init__(self, console: Console, *, verbose: bool = False, logs_only: bool = False) -> None:
        self.console = console
        self.verbose = verbose
        self.logs_only = logs_only
        self.outcome: str | None = None

    def show(self, event: StreamEvent) -> None:
        if self.outcome is not None:
            return  # exactly one ending is shown, even if a server repeats the terminal event
        if self.logs_only:
            if event.type == "log":
                self.console.print(Text(str(event.data.get("message", "")), style=_log_style(event.data)))
            elif event.type in RUN_TERMINAL:
                self.outcome = RUN_TERMINAL[event.type]
            return
        d = event.data
        if event.type == "run.queued":
            # Before the ▶ line, so not a branch of the tree; says why nothing happens yet.
            run_id = event.aggregate_id or "the run"
            self.console.print(Text(f"… {run_id} queued, waiting for a runner", style="dim"))
        elif event.type == "run.started":
            run_id = event.aggregate_id or d.get("run_id", "")
            line = Text("▶ Run started: ", style="bold").append(str(run_id), style="bold cyan")
            if d.get("isolated") is False:
                line.append(f"  ({d.get('backend', 'process')} backend: not isolated)", style="yellow")
            self.console.print(line)
        elif event.type == "run.completed":
            self.outcome = "succeeded"
            self.console.print(
                Text(f"✅ Run completed in {human_duration(d.get('duration_ms', 0))}", style="green")
            )
            print_output(self.console, d.get("output", d.get("result")))
        elif event.type == "run.failed":
            self.outcome = "failed"
            self._failed(d.get("error_message") or d.get("error") or "unknown error", d.get("stack_trace"))
        elif event.type == "run.canceled":
            self.outcome = "canceled"
            self.console.print(Text("⏹ Run canceled", style="magenta"))
        else:
            summary = describe(event)
            if summary is None:
                if not self.verbose:
                    return
                summary = Text(f"{event.type} {short(d)}", style="dim")
            self._branch(event, summary)

    def finish_from_record(self, run: Run) -> None:
        """End the view from the run record when the stream closed without a terminal event."""
        if run.status == "succeeded":
            self.show(StreamEvent("run.completed", {"duration_ms": run.duration_ms, "output": run.output}))
        elif run.status == "failed":
            self.show(StreamEvent("run.failed", {"error_message": run.error_message}))
        elif run.status == "canceled":
            self.show(StreamEvent("run.canceled", {}))

    def _branch(self, event: StreamEvent, summary: Text) -> None:
        lines = summary.split("\n") if "\n" in summary.plain else [summary]
        prefix = Text(f"├─ [{clock(event.time)}] ", style="dim")
        self.console.print(Text.assemble(prefix, lines[0]))
        for more in lines[1:]:  # multi-line log messages stay inside the tree
            self.console.print(Text.assemble(Text("│  ", style="dim"), more))

    def _failed(self, message: str, stack_trace: Any) -> None:
        self.console.print(Text(f"❌ Run failed: {message}", style="red"))
        if stack_trace and self.verbose:
            self.console.print(Text(str(stack_trace).rstrip(), style="dim"))
        elif stack_trace:
            self.console.print(Text("(run with --verbose to see the stack trace)", style="dim"))


def print_output(console: Console, output: Any) -> None:
    """A run's output: text as is, anything else as indented JSON."""
    if output is None:
        return
    if isinstance(output, str):
        console.print(Text(output))
    else:
        console.print(JSON.from_data(output, ensure_ascii=False, default=str))


def print_json(data: Any) -> None:
    """The answer as JSON for ``--json`` (contract types as the API sends them): no styling or
    wrapping, so it pipes into jq unchanged."""
    click.echo(json.dumps(msgspec.to_builtins(data), indent=2, ensure_ascii=False))


def done(as_json: bool, record: dict[str, Any], *message: str | tuple[str, str]) -> None:
    """The end of a command that changed something: ``record`` as JSON for ``--json``, otherwise
    a tick and ``message`` (plain strings and (text, style) pairs, as ``Text.assemble`` takes)."""
    if as_json:
        print_json(record)
    else:
        make_console().print(Text.assemble(("✓ ", "green"), *message))


def print_ndjson_event(msg: SseMessage) -> None:
    """One stream event as one JSON line for ``--json`` on a stream (NDJSON): the stored event as
    the API sent it, plus its stream sequence as ``seq`` (give it to ``--after`` to resume)."""
    try:
        envelope = json.loads(msg.data)
    except (ValueError, RecursionError):
        envelope = {"type": msg.event, "data": msg.data}
    if not isinstance(envelope, dict):
        envelope = {"type": msg.event, "data": envelope}
    seq = stream_seq(msg.id)
    click.echo(json.dumps({"seq": seq, **envelope}, ensure_ascii=False, separators=(",", ":")))


def event_line(event: StreamEvent) -> Text:
    """One line per event for ``events tail``: time, aggregate, type, summary."""
    line = Text.assemble(
        (f"[{clock(event.time)}] ", "dim"),
        (f"{event.aggregate_id or '-'}  ", "cyan"),
        (event.type, "bold"),
    )
    summary = describe(event)
    if summary is not None:
        line.append("  ").append_text(Text(short(summary.plain, 160), style=summary.style))
    return line
