"""``events tail``: every event of a project, live, one line each."""

from __future__ import annotations

from contextlib import closing

import click

from ._client import connect
from ._options import api_option, json_option, name_option, project_option, resolve_project
from .render import decode_event, event_line, make_console, print_ndjson_event


@click.group()
def events() -> None:
    """Watch the event stream of a project.

    \b
    Example:
      crewyard events tail --project research
    """


@events.command("tail")
@project_option
@name_option
@click.option("--after", type=click.IntRange(min=0), metavar="SEQ", help="Start after this sequence number.")
@json_option
@api_option
@click.pass_context
def tail(
    ctx: click.Context,
    project: str | None,
    deployment_name: str | None,
    after: int | None,
    as_json: bool,
    api_url: str,
) -> None:
    """Follow every event of a project (runs, deployments, env changes) until Ctrl-C.

    With --json: one JSON object per line (each with its stream sequence, "seq").

    \b
    Examples:
      crewyard events tail --project research
      crewyard events tail --project research --after 1200
    """
    target = resolve_project(project, name=deployment_name)
    console = make_console()
    with connect(api_url) as client:
        # A project's stream has no end: a clean close is just a reason to reconnect.
        stream = client.project_events(target, after=after)
        try:
            with closing(stream.messages()) as messages:
                for msg in messages:
                    if as_json:
                        print_ndjson_event(msg)
                    else:
                        console.print(event_line(decode_event(msg)))
        except KeyboardInterrupt:
            ctx.exit(130)
