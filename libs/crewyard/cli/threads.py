"""Threads: conversations whose state outlives their runs — ``threads create|list|get|run|history|
copy|delete`` (``invoke --thread ID`` runs in one too)."""

from __future__ import annotations

from typing import Any

import click
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from crewyard.contract.threads import Thread

from ._client import connect
from ._options import (
    api_option,
    id_argument,
    json_option,
    name_option,
    parse_input,
    parse_json,
    project_option,
    resolve_project,
)
from .render import local_time, make_console, print_json, print_output, status_text
from .versions import env_option


@click.group()
def threads() -> None:
    """Threads: a conversation whose state outlives its runs (one run at a time).

    Each run in a thread starts from the state the last one left (one checkpoint per run); a
    LangGraph graph keeps its own checkpoints there, interrupts included. CrewAI and plain
    Python crews get the state in their input (`thread`) and leave it with
    `crewyard_runtime.thread.update(...)`.

    \b
    Examples:
      crewyard threads create --project chat --metadata '{"user": "u1"}'
      crewyard threads run thr_… -i '{"messages": [{"role": "user", "content": "hi"}]}' --stream
      crewyard threads run thr_… --resume '"yes"'          # answer an interrupt()
      crewyard threads history thr_…
    """


def _show(console: Console, thread: Thread) -> None:
    console.print(
        Text.assemble(("Thread ", "bold"), (thread.thread_id, "bold cyan"), "  ", status_text(thread.status))
    )
    console.print(Text(f"  project {thread.project}, deployment {thread.name}", style="dim"))
    if thread.active_run_id:
        console.print(Text(f"  running {thread.active_run_id}", style="dim"))
    if thread.metadata:
        console.print(Text(f"  metadata {thread.metadata}", style="dim"))
    print_output(console, thread.values)


@threads.command("create")
@click.argument("deployment_id", required=False)
@project_option
@name_option
@click.option("--metadata", "metadata_text", default="{}", metavar="JSON", help="The thread's metadata.")
@click.option("--values", "values_text", metavar="JSON", help="Its initial state.")
@json_option
@api_option
def create(
    deployment_id: str | None,
    project: str | None,
    deployment_name: str | None,
    metadata_text: str,
    values_text: str | None,
    as_json: bool,
    api_url: str,
) -> None:
    """Create a thread of DEPLOYMENT_ID's deployment, or of the project's (-n names one)."""
    metadata = parse_input(metadata_text, "--metadata")
    values = parse_input(values_text, "--values") if values_text is not None else None
    target = None if deployment_id else resolve_project(project, name=deployment_name)
    with connect(api_url) as client:
        thread = client.create_thread(
            project=target,
            deployment_id=deployment_id,
            name=None if deployment_id else deployment_name,
            metadata=metadata,
            values=values,
        )
    if as_json:
        print_json(thread)
    else:
        _show(make_console(), thread)


@threads.command("list")
@project_option
@name_option
@click.option("--status", type=click.Choice(("idle", "busy", "error", "interrupted")), help="Only these.")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0)
@json_option
@api_option
def list_threads(
    project: str | None,
    deployment_name: str | None,
    status: str | None,
    limit: int,
    offset: int,
    as_json: bool,
    api_url: str,
) -> None:
    """List a project's threads, newest first."""
    target = resolve_project(project, name=deployment_name)
    with connect(api_url) as client:
        page = client.thread_page(
            project=target, name=deployment_name, status=status, limit=limit, offset=offset
        )
    if as_json:
        print_json(page)
        return
    items = page.threads
    console = make_console()
    if not items:
        console.print(f"No threads in project {target}.")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for column in ("THREAD", "DEPLOYMENT", "STATUS", "UPDATED", "METADATA"):
        table.add_column(column, no_wrap=column != "METADATA", style="cyan" if column == "THREAD" else None)
    for t in items:
        table.add_row(
            t.thread_id,
            t.name,
            status_text(t.status),
            local_time(t.updated_at),
            Text(str(t.metadata or ""), style="dim"),
        )
    console.print(table)
    if page.next_offset is not None:  # (a page ends early once its states take 16 MiB)
        console.print(Text(f"More: --offset {page.next_offset}", style="dim"))


@threads.command("get")
@id_argument("thread_id", "thr")
@json_option
@api_option
def get(thread_id: str, as_json: bool, api_url: str) -> None:
    """Show a thread and its current state."""
    with connect(api_url) as client:
        thread = client.get_thread(thread_id)
    if as_json:
        print_json(thread)
    else:
        _show(make_console(), thread)


@threads.command("run")
@id_argument("thread_id", "thr")
@click.option(
    "--input", "-i", "input_text", default="{}", show_default=True, metavar="JSON", help="The crew's input."
)
@click.option(
    "--resume",
    "resume_text",
    metavar="JSON",
    help='Resume an interrupted graph with this value ({"resume": …}).',
)
@env_option
@click.option("--stream", is_flag=True, help="Show the run's events live until it ends.")
@json_option
@api_option
@click.pass_context
def run(
    ctx: click.Context,
    thread_id: str,
    input_text: str,
    resume_text: str | None,
    environment: str | None,
    stream: bool,
    as_json: bool,
    api_url: str,
) -> None:
    """Start a run in a thread (refused while the thread runs another)."""
    ctx.exit(
        start_run(thread_id, parse_input(input_text), resume_text, environment, stream, as_json, api_url)
    )


def start_run(
    thread_id: str,
    payload: dict[str, Any],
    resume_text: str | None,
    environment: str | None,
    stream: bool,
    as_json: bool,
    api_url: str,
) -> int:
    """Shared by ``threads run`` and ``invoke --thread``; the command's exit code."""
    command = None
    if resume_text is not None:
        command = {"resume": parse_json(resume_text, "--resume")}
    console = make_console()
    with connect(api_url) as client:
        started = client.run_thread(thread_id, input=payload, command=command, environment=environment)
        if not stream:
            if as_json:
                print_json(started)
            else:
                console.print(
                    Text.assemble(
                        "Run ",
                        (started.run_id, "bold cyan"),
                        f" in thread {thread_id}",
                        (f" (version {started.version_number}, {started.environment})", "dim"),
                    )
                )
                console.print(Text(f"  follow it:  crewyard runs events {started.run_id}", style="dim"))
            return 0
        from .runs import follow_run

        return follow_run(client, console, started.run_id, as_json=as_json)


@threads.command("history")
@id_argument("thread_id", "thr")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0)
@json_option
@api_option
def history(thread_id: str, limit: int, offset: int, as_json: bool, api_url: str) -> None:
    """A thread's checkpoints, newest first (one per run)."""
    with connect(api_url) as client:
        page = client.thread_history(thread_id, limit=limit, offset=offset)
    if as_json:
        print_json(page)
        return
    console = make_console()
    console.print(Text(f"{page.total} checkpoints of {thread_id}", style="bold"))
    for cp in page.history:
        waits = "  waits for input" if cp.interrupts else ""
        console.print(
            Text.assemble(
                (cp.checkpoint_id, "cyan"),
                f"  {local_time(cp.created_at)}  run {cp.run_id or '-'}",
                (waits, "yellow"),
            )
        )
        print_output(console, cp.values)
    if offset + len(page.history) < page.total:  # (a page may end early: large states)
        console.print(Text(f"More: --offset {offset + len(page.history)}", style="dim"))


@threads.command("copy")
@id_argument("thread_id", "thr")
@json_option
@api_option
def copy(thread_id: str, as_json: bool, api_url: str) -> None:
    """A new thread that starts where this one is; the two go their own ways."""
    with connect(api_url) as client:
        thread = client.copy_thread(thread_id)
    if as_json:
        print_json(thread)
    else:
        _show(make_console(), thread)


@threads.command("delete")
@id_argument("thread_id", "thr")
@json_option
@api_option
def delete(thread_id: str, as_json: bool, api_url: str) -> None:
    """Delete a thread (refused while it runs a run)."""
    with connect(api_url) as client:
        deleted = client.delete_thread(thread_id)
    if as_json:
        print_json(deleted)
    else:
        make_console().print(Text.assemble(("✓ ", "green"), "deleted ", (thread_id, "cyan")))
