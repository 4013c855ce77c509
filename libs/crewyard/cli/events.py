"""``events tail``: every event of a project, live, one line each."""

from __future__ import annotations

from contextlib import closing

import click

from ._client import ApiClient, seg
from ._options import api_option, project_option, resolve_project
from ._sse import EventStream
from .render import decode_event, event_line, make_console


@click.group()
def events() -> None:
    """Watch the event stream of a project.

    \b
    Example:
      crewyard events tail --project research
    """


@events.command("tail")
@project_option
@click.option("--after", type=click.IntRange(min=0), metavar="SEQ", help="Start after this sequence number.")
@api_option
@click.pass_context
def tail(ctx: click.Context, project: str | None, after: int | None, api_url: str) -> None:
    """Follow every event of a project (runs, deployments, env changes) until Ctrl-C.

    \b
    Examples:
      crewyard events tail --project research
      crewyard events tail --project research --after 1200
    """
    target = resolve_project(project)
    console = make_console()
    with ApiClient(api_url) as client:
        # A project's stream has no end: a clean close is just a reason to reconnect.
        stream = EventStream(
            client, f"/v1/projects/{seg(target)}/events", last_event_id=None if after is None else str(after)
        )
        try:
            with closing(stream.messages()) as messages:
                for msg in messages:
                    console.print(event_line(decode_event(msg)))
        except KeyboardInterrupt:
            ctx.exit(130)
