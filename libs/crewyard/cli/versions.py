"""Moving environments between versions: ``promote`` and ``deploy --rollback``.

Both move a pointer at once: nothing is uploaded or rebuilt, the next run of that environment
runs the version.
"""

from __future__ import annotations

import click
from rich.text import Text

from crewyard.client import Client
from crewyard.contract.versions import PointerMoved

from ._client import CliError, connect
from ._options import api_option, json_option, project_option, resolve_project
from .render import make_console, print_json

ENVIRONMENTS = ("production", "staging")

env_option = click.option(
    "--env",
    "environment",
    type=click.Choice(ENVIRONMENTS),
    help="Environment (default: production).",
)


def say_moved(moved: PointerMoved, verb: str) -> None:
    make_console().print(
        Text.assemble(
            ("✓ ", "green"),
            f"{moved.environment} of {moved.name} {verb} version ",
            (str(moved.version_number), "bold"),
            " (",
            (moved.version_id, "cyan"),
            ")",
        )
    )


def rollback(
    client: Client, project: str, version: str, name: str | None, environment: str | None, *, as_json: bool
) -> None:
    """``deploy --rollback [VERSION_ID]``: to that version, or to what the environment ran before."""
    if version:
        current = client.rollback(project, version, environment)
        if as_json:
            print_json(current)
            return
        where = "" if (environment or "production") == "production" else f" in {environment}"
        make_console().print(
            Text.assemble(
                ("✓ ", "green"), (version, "cyan"), f" is the current deployment of {project} again{where}"
            )
        )
        return
    moved = client.rollback_environment(
        project, name or default_name(client, project), environment=environment or "production"
    )
    if as_json:
        print_json(moved)
    else:
        say_moved(moved, "is back on")


def default_name(client: Client, project: str) -> str:
    """The deployment name a project-only request means: ``default`` if it exists, else the only one."""
    names = sorted({d.name for d in client.list_deployments(project) if d.name})
    if "default" in names or not names:
        return "default"
    if len(names) == 1:
        return names[0]
    raise CliError(f"project {project} has several deployments ({', '.join(names)}); choose one with --name")


@click.command()
@project_option
@click.option(
    "--name", "-n", "name", metavar="DEPLOYMENT", help="Deployment name (default: the project's default one)."
)
@click.option(
    "--from",
    "source",
    type=click.Choice(ENVIRONMENTS),
    default="staging",
    show_default=True,
    help="Environment whose version is promoted.",
)
@click.option(
    "--to",
    "target",
    type=click.Choice(ENVIRONMENTS),
    default="production",
    show_default=True,
    help="Environment that runs it from now on.",
)
@click.option("--version", "version", metavar="VERSION_ID", help="Promote this version instead of --from's.")
@json_option
@api_option
def promote(
    project: str | None,
    name: str | None,
    source: str,
    target: str,
    version: str | None,
    as_json: bool,
    api_url: str,
) -> None:
    """Make an environment run another environment's version (or a given one), at once.

    Nothing is rebuilt: the next run in --to runs the version. Undo it with
    `crewyard deploy --rollback --env production`.

    \b
    Examples:
      crewyard deploy --env staging --project research     # try a version in staging first
      crewyard promote --from staging --to production --project research
      crewyard promote --version ver_01j9zq6m8k2v3w4x5y6z7a8b9c --to staging
    """
    project = resolve_project(project, name=name)
    with connect(api_url) as client:
        moved = client.promote(
            project,
            name or default_name(client, project),
            to=target,
            from_environment=source,
            version_id=version,
        )
    if as_json:
        print_json(moved)
    else:
        say_moved(moved, "now runs")
