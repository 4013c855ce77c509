"""Projects: ``projects list`` and ``projects limit`` (how many runs may execute at once)."""

from __future__ import annotations

import click

from crewyard.contract.projects import LimitsSet

from ._client import CliError, connect
from ._options import api_option, json_option, name_option, project_option, resolve_project
from .render import listing_table, local_time, make_console, print_json


@click.group()
def projects() -> None:
    """List projects and set their limits.

    \b
    Examples:
      crewyard projects list
      crewyard projects limit 4 --project research
    """


@projects.command("list")
@json_option
@api_option
def list_projects(as_json: bool, api_url: str) -> None:
    """List every project with its current deployment and concurrency limit."""
    with connect(api_url) as client:
        rows = client.list_projects()
    if as_json:
        print_json({"projects": rows})
        return
    console = make_console()
    if not rows:
        console.print("No projects yet: crewyard deploy makes one.")
        return
    table = listing_table("PROJECT", "CURRENT DEPLOYMENT", "MAX RUNS AT ONCE", "CREATED")
    for row in rows:
        table.add_row(
            row.name,
            row.current_deployment_id or "-",
            str(row.max_concurrent_runs or "no limit"),
            local_time(row.created_at),
        )
    console.print(table)


@projects.command("limit")
@click.argument("max_runs", metavar="N|none")
@project_option
@name_option
@json_option
@api_option
def limit(
    max_runs: str, project: str | None, deployment_name: str | None, as_json: bool, api_url: str
) -> None:
    """At most N runs of the project execute at once; more wait, pending, in order.

    Deployments can set their own `max_concurrent_runs` in crewyard.toml as well; both hold
    across every runner. `none` removes the project's limit.
    """
    value: int | None
    if max_runs.lower() == "none":
        value = None
    # ASCII digits only ("²" is a digit int() refuses), and few: int() refuses 5,000 of them.
    elif max_runs.isascii() and max_runs.isdigit() and len(max_runs.lstrip("0")) <= 9 and int(max_runs) >= 1:
        value = int(max_runs)
    else:
        raise click.BadParameter("give a whole number of runs (at least 1) or none", param_hint="N")
    name = resolve_project(project, name=deployment_name)
    with connect(api_url) as client:
        answer = client.set_limits(name, value)
    # Every field of the answer has a default, so anything that is a JSON object reads as one
    # (``{}`` as project "" without a limit): the route answers with the project and the limit set.
    promised = LimitsSet(project=name, max_concurrent_runs=value)
    if answer != promised:
        limit_text = value or "none"
        raise CliError(
            f"the API answered with something unexpected: not project {name}'s limit set to {limit_text}"
        )
    if as_json:
        print_json(answer)
        return
    make_console().print(f"Project {name}: " + (f"at most {value} runs at once" if value else "no run limit"))
