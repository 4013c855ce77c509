"""Starting runs and looking at them: ``invoke`` and ``runs list|get|events|logs|cancel``.

``runs artifacts`` and ``runs download`` live in :mod:`.artifacts`.
"""

from __future__ import annotations

import math
import shlex
from contextlib import closing
from typing import cast

import click
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from crewyard.client import Client, Run
from crewyard.contract.runs import MAX_RUNS_PAGE, RunStatus

from ._client import CliError, connect
from ._options import (
    api_option,
    id_argument,
    json_option,
    name_option,
    parse_input,
    project_name,
    project_option,
    resolve_project,
)
from .render import (
    RunView,
    decode_event,
    human_duration,
    local_time,
    make_console,
    print_json,
    print_ndjson_event,
    print_output,
    status_text,
)
from .versions import env_option

FINAL_STATUSES = frozenset({"succeeded", "failed", "canceled"})
RUN_STATUSES = ("pending", "running", "succeeded", "failed", "canceled")


@click.command()
@click.argument("deployment_id", required=False)
@project_option
@name_option
@click.option(
    "--input",
    "-i",
    "input_text",
    default="{}",
    show_default=True,
    metavar="JSON",
    help="The crew's input: a JSON object, @file.json, or - to read it from stdin.",
)
@env_option
@click.option("--thread", "thread_id", metavar="THREAD_ID", help="Run in this thread (its state carries on).")
@click.option("--stream", is_flag=True, help="Show the run's events live until it ends.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    callback=lambda ctx, param, value: _finite_seconds(value),
    metavar="SECONDS",
    help="Fail the run when it runs longer than this.",
)
@click.option("--verbose", "-v", is_flag=True, help="With --stream: show stack traces and every event type.")
@click.option(
    "--cancel-on-disconnect",
    is_flag=True,
    help="With --stream: cancel the run when this command stops following it (Ctrl-C, lost connection).",
)
@json_option
@api_option
@click.pass_context
def invoke(
    ctx: click.Context,
    deployment_id: str | None,
    project: str | None,
    deployment_name: str | None,
    input_text: str,
    environment: str | None,
    thread_id: str | None,
    stream: bool,
    timeout: float | None,
    verbose: bool,
    cancel_on_disconnect: bool,
    as_json: bool,
    api_url: str,
) -> None:
    """Start a run of a deployed crew.

    Runs the version --env (production by default) runs of the project's deployment: -n NAME
    (also the project, unless --project says another), else the project's default one. With
    DEPLOYMENT_ID: exactly that version, or with --env that environment's version of the same
    deployment. Prints the run id at once; with --stream, follows the run live and exits with 0
    when it succeeded and 1 when it failed or was canceled. Ctrl-C stops following (exit 130);
    the run keeps going. With --json: the run as JSON, or with --stream one JSON line per event.

    \b
    Examples:
      crewyard invoke --project research -i '{"topic": "AI agents"}' --stream
      crewyard invoke --project research --env staging -i @input.json
      crewyard invoke --thread thr_01j9zq6m8k2v3w4x5y6z7a8b9c -i '{"message": "and then?"}' --stream
      crewyard invoke dep_01j9zq6m8k2v3w4x5y6z7a8b9c -i @input.json
      crewyard invoke -n support-agent -i '{"question": "…"}' --stream --json | jq .type
    """
    payload = parse_input(input_text)
    if thread_id:  # the thread says which deployment runs
        from .threads import start_run

        ctx.exit(start_run(thread_id, payload, None, environment, stream, as_json, api_url))
    target = None if deployment_id else resolve_project(project, name=deployment_name)
    console = make_console()
    with connect(api_url) as client:
        # One idempotency key per invocation: a retried POST after a lost answer finds the same run.
        run = client.create_run(
            deployment_id=deployment_id,
            project=target,
            name=None if deployment_id else deployment_name,
            environment=environment,
            input=payload,
            timeout_s=timeout,
        )
        run_id = run.id
        if as_json and not stream:
            print_json(run)
            return
        if not stream:
            version = f" (version {run.version_number}, {run.environment})" if run.version_number else ""
            console.print(
                Text.assemble(
                    "Run ", (run_id, "bold cyan"), " is ", status_text(run.status), (version, "dim")
                )
            )
            console.print(Text(f"  follow it:  crewyard runs events {run_id}", style="dim"))
            console.print(Text(f"  result:     crewyard runs get {run_id}", style="dim"))
            return
        ctx.exit(
            follow_run(
                client,
                console,
                run_id,
                verbose=verbose,
                cancel_on_disconnect=cancel_on_disconnect,
                as_json=as_json,
            )
        )


def _finite_seconds(value: float | None) -> float | None:
    # FloatRange lets inf and nan through (nan compares false with every bound), and no JSON
    # body can carry them.
    if value is not None and not math.isfinite(value):
        raise CliError(f"--timeout must be a number of seconds, not {value}")
    return value


def follow_run(
    client: Client,
    console: Console,
    run_id: str,
    *,
    after: int | None = None,
    verbose: bool = False,
    logs_only: bool = False,
    cancel_on_disconnect: bool = False,
    as_json: bool = False,
) -> int:
    """Render a run's events until its terminal event; the exit code for the command."""
    view = RunView(console, verbose=verbose, logs_only=logs_only)
    final: list[Run] = []

    def run_is_over() -> bool:
        # The stream ended without a terminal event: trust the run record, not the connection.
        run = client.get_run(run_id)
        if run.status in FINAL_STATUSES:
            final.append(run)
            if not as_json:
                view.finish_from_record(run)
            return True
        return False

    events = client.run_events(run_id, after=after, cancel_on_disconnect=cancel_on_disconnect)
    events.on_eof = run_is_over
    try:
        with closing(events.messages()) as messages:
            for msg in messages:
                event = decode_event(msg)
                if as_json:
                    if not logs_only or event.type == "log":
                        print_ndjson_event(msg)
                    view.outcome = _outcome(event.type) or view.outcome
                else:
                    view.show(event)
                if view.outcome is not None:
                    break
    except KeyboardInterrupt:
        say = make_console(stderr=True) if as_json else console  # --json output stays NDJSON only
        say.print()
        if cancel_on_disconnect:
            say.print(Text(f"Stopped following {run_id}; the run is being canceled.", style="yellow"))
            return 130
        say.print(Text(f"Stopped following {run_id}; the run keeps going.", style="yellow"))
        again = "logs" if logs_only else "events"  # the command that was following it
        say.print(Text(f"Resume with: crewyard runs {again} {run_id}", style="dim"))
        return 130
    outcome = view.outcome or (final[0].status if final else None)
    return 0 if outcome == "succeeded" else 1


def _outcome(event_type: str) -> str | None:
    return {"run.completed": "succeeded", "run.failed": "failed", "run.canceled": "canceled"}.get(event_type)


@click.group()
def runs() -> None:
    """List and inspect runs, follow their events, get their logs and artifacts.

    \b
    Examples:
      crewyard runs list --project research --status failed
      crewyard runs events run_01j9zq6m8k2v3w4x5y6z7a8b9c
    """


@runs.command("list")
@click.option(
    "--project",
    "-p",
    envvar="CREWYARD_PROJECT",
    show_envvar=True,
    metavar="NAME",
    callback=project_name,
    help="Only runs of this project.",
)
@click.option(
    "--deployment", "deployment_id", metavar="ID", help="Only runs of this version (dep_… or ver_…)."
)
@click.option("--status", type=click.Choice(RUN_STATUSES), help="Only runs in this state.")
@click.option(
    "--limit", type=click.IntRange(1, MAX_RUNS_PAGE), default=20, show_default=True, help="How many runs."
)
@click.option("--cursor", metavar="CURSOR", help="Continue a previous listing (printed under it).")
@json_option
@api_option
def list_runs(
    project: str | None,
    deployment_id: str | None,
    status: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
    api_url: str,
) -> None:
    """List runs, newest first.

    \b
    Example:
      crewyard runs list --project research --status failed --limit 5
    """
    with connect(api_url) as client:
        wanted = cast(RunStatus | None, status)  # click.Choice(RUN_STATUSES) checked it
        page = client.list_runs(
            project=project, deployment_id=deployment_id, status=wanted, limit=limit, cursor=cursor
        )
    if as_json:
        print_json(page)
        return
    console = make_console()
    items = page.runs
    if not items:
        console.print("No runs match." if project or deployment_id or status or cursor else "No runs yet.")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("RUN", no_wrap=True, style="cyan")
    table.add_column("PROJECT")
    table.add_column("STATUS")
    table.add_column("CREATED", no_wrap=True)
    table.add_column("DURATION", justify="right")
    for run in items:
        table.add_row(
            run.id,
            run.project,
            status_text(run.status),
            local_time(run.created_at),
            human_duration(run.duration_ms),
        )
    console.print(table)
    if page.next_cursor:  # the same listing, on from where this page ends
        same = [("--project", project), ("--deployment", deployment_id), ("--status", status)]
        same += [("--limit", str(limit) if limit != 20 else None), ("--cursor", page.next_cursor)]
        more = " ".join(f"{flag} {shlex.quote(value)}" for flag, value in same if value)
        console.print(Text(f"more: crewyard runs list {more}", style="dim"))


@runs.command("get")
@id_argument("run_id", "run")
@json_option
@api_option
def get_run(run_id: str, as_json: bool, api_url: str) -> None:
    """Show one run: status, timing, input, output or error.

    \b
    Example:
      crewyard runs get run_01j9zq6m8k2v3w4x5y6z7a8b9c --json
    """
    with connect(api_url) as client:
        run = client.get_run(run_id)
    if as_json:
        print_json(run)
        return
    console = make_console()
    console.print(Text.assemble((run.id, "bold cyan"), "  ", status_text(run.status)))
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column()
    rows = [
        ("project", run.project),
        ("deployment", run.deployment_id),
        ("created", local_time(run.created_at) if run.created_at else None),
        ("started", local_time(run.started_at) if run.started_at else None),
        ("completed", local_time(run.completed_at) if run.completed_at else None),
        ("duration", human_duration(run.duration_ms) or None),
    ]
    for label, value in rows:
        if value:
            grid.add_row(label, Text(str(value)))
    console.print(grid)
    if run.input:
        console.print(Text("input", style="dim"))
        print_output(console, run.input)
    if run.output is not None:
        console.print(Text("output", style="dim"))
        print_output(console, run.output)
    if run.error_message:
        console.print(Text(f"error: {run.error_message}", style="red"))


@runs.command("events")
@id_argument("run_id", "run")
@click.option(
    "--after", type=click.IntRange(min=0), metavar="SEQ", help="Only events after this sequence number."
)
@click.option("--verbose", "-v", is_flag=True, help="Show stack traces and every event type.")
@json_option
@api_option
@click.pass_context
def run_events(
    ctx: click.Context, run_id: str, after: int | None, verbose: bool, as_json: bool, api_url: str
) -> None:
    """Show a run's events: its history first, then live until it ends.

    Exits with 0 when the run succeeded, 1 when it failed or was canceled. With --json: one
    JSON object per line (each with its stream sequence, "seq").

    \b
    Example:
      crewyard runs events run_01j9zq6m8k2v3w4x5y6z7a8b9c
    """
    with connect(api_url) as client:
        code = follow_run(client, make_console(), run_id, after=after, verbose=verbose, as_json=as_json)
    ctx.exit(code)


@runs.command("logs")
@id_argument("run_id", "run")
@json_option
@api_option
@click.pass_context
def run_logs(ctx: click.Context, run_id: str, as_json: bool, api_url: str) -> None:
    """Print only a run's log lines (following it until it ends); --json: its log events as JSON lines.

    Exits with 0 when the run succeeded, 1 when it failed or was canceled (as runs events).

    \b
    Example:
      crewyard runs logs run_01j9zq6m8k2v3w4x5y6z7a8b9c > run.log
    """
    with connect(api_url) as client:
        code = follow_run(client, make_console(), run_id, logs_only=True, as_json=as_json)
    ctx.exit(code)


@runs.command("cancel")
@id_argument("run_id", "run")
@json_option
@api_option
def cancel_run(run_id: str, as_json: bool, api_url: str) -> None:
    """Cancel a pending or running run.

    \b
    Example:
      crewyard runs cancel run_01j9zq6m8k2v3w4x5y6z7a8b9c
    """
    with connect(api_url) as client:
        answer = client.cancel_run(run_id)
    if as_json:
        print_json(answer)
        return
    status = answer.status
    console = make_console()
    if status == "canceled":
        console.print(Text.assemble("⏹ ", (run_id, "cyan"), " canceled"))
    else:
        # Cancelling a running run is asynchronous: the runner stops it within its grace period.
        console.print(
            Text.assemble("⏹ Cancel requested for ", (run_id, "cyan"), " (now ", status_text(status), ")")
        )
