"""A project's environment variables and secrets: ``env set|list|unset``.

Values go to the API once and are never shown again: the API lists names only, and this module
never echoes a value back.
"""

from __future__ import annotations

import re
import sys

import click
import msgspec
from rich import box
from rich.table import Table
from rich.text import Text

from ._client import CliError, connect
from ._options import api_option, json_option, name_option, project_option, resolve_project, utf8
from .render import local_time, make_console, print_json
from .versions import ENVIRONMENTS

_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_key(key: str) -> str:
    if not _KEY_RE.fullmatch(key):
        raise CliError(
            f"{key!r} is not a valid environment variable name "
            "(letters, digits and _, not starting with a digit)"
        )
    return key


def _ask_value(key: str, asked: int) -> str:
    """The value of ``key``, typed without echo; or, when stdin is not a terminal, all of it (one
    line end at its end dropped: ``pass show openai | crewyard env set OPENAI_API_KEY``, a PEM
    key of many lines too) for the one KEY given without a value (``asked``: how many were)."""
    if sys.stdin is not None and sys.stdin.isatty():
        return str(click.prompt(key, hide_input=True, err=True))
    if asked > 1:
        raise CliError("only one KEY may take its value from stdin; give the others as KEY=VALUE")
    text = sys.stdin.read() if sys.stdin is not None else ""
    text = text[:-2] if text.endswith("\r\n") else text.removesuffix("\n")
    if not text:
        raise CliError(f"no value for {key}: give {key}=VALUE, or its value on stdin")
    return text


scope_option = click.option(
    "--env",
    "environment",
    type=click.Choice(ENVIRONMENTS),
    help="Only for runs in this environment (default: every environment).",
)


@click.group()
def env() -> None:
    """Set, list and remove a project's environment variables (secrets included).

    Runs get them as process environment variables from their next start on.

    \b
    Examples:
      crewyard env set OPENAI_API_KEY=sk-... --project research
      crewyard env list --project research
    """


@env.command("set")
@click.argument("pairs", nargs=-1, required=True, metavar="KEY=VALUE...")
@project_option
@name_option
@scope_option
@json_option
@api_option
def set_env(
    pairs: tuple[str, ...],
    project: str | None,
    deployment_name: str | None,
    environment: str | None,
    as_json: bool,
    api_url: str,
) -> None:
    """Set one or more variables.

    A KEY without =VALUE asks for the value without echoing it, which keeps secrets out of your
    shell history; with stdin not a terminal, all of stdin is its value (one KEY only). With
    --env the value applies to runs in that environment only (over a value set without --env,
    which applies to every environment).

    \b
    Examples:
      crewyard env set MODEL=gpt-4o-mini TEMPERATURE=0.2 --project research
      crewyard env set OPENAI_API_KEY --project research
      pass show openai | crewyard env set OPENAI_API_KEY --project research
      crewyard env set OPENAI_API_KEY=sk-... -n support-agent
      crewyard env set MODEL=gpt-4o --env staging --project research
    """
    target = resolve_project(project, name=deployment_name)
    values: dict[str, str] = {}
    # Every pair is checked before the first request, so a typo sets nothing rather than half.
    asked = sum("=" not in pair for pair in pairs)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        check_key(key)
        if key in values:
            raise CliError(f"{key} is given twice")
        values[key] = utf8(value if sep else _ask_value(key, asked), f"the value of {key}")
    console = make_console()
    with connect(api_url) as client:
        for key, value in values.items():
            changed = client.set_env(target, key, value, environment)
            if as_json:
                click.echo(msgspec.json.encode(changed).decode())
                continue
            where = f" in {environment}" if environment else ""
            console.print(
                Text.assemble(("✓ ", "green"), "set ", (key, "bold"), f" on project {target}{where}")
            )


@env.command("list")
@project_option
@name_option
@json_option
@api_option
def list_env(project: str | None, deployment_name: str | None, as_json: bool, api_url: str) -> None:
    """List a project's variable names (values are never shown).

    \b
    Example:
      crewyard env list --project research
    """
    target = resolve_project(project, name=deployment_name)
    with connect(api_url) as client:
        items = client.list_env(target)
    if as_json:
        print_json({"env": items})
        return
    console = make_console()
    if not items:
        console.print(f"No environment variables in project {target}.")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("KEY", no_wrap=True, style="bold")
    table.add_column("ENVIRONMENT", no_wrap=True)
    table.add_column("UPDATED", no_wrap=True)
    for item in items:
        scope = Text(item.environment or "all", style="" if item.environment else "dim")
        table.add_row(item.key, scope, local_time(item.updated_at))
    console.print(table)


@env.command("unset")
@click.argument("key")
@project_option
@name_option
@scope_option
@json_option
@api_option
def unset_env(
    key: str,
    project: str | None,
    deployment_name: str | None,
    environment: str | None,
    as_json: bool,
    api_url: str,
) -> None:
    """Remove a variable (with --env: that environment's own value).

    \b
    Example:
      crewyard env unset OPENAI_API_KEY --project research
    """
    check_key(key)
    target = resolve_project(project, name=deployment_name)
    with connect(api_url) as client:
        changed = client.unset_env(target, key, environment)
    if as_json:
        print_json(changed)
        return
    where = f" ({environment})" if environment else ""
    make_console().print(
        Text.assemble(("✓ ", "green"), "removed ", (key, "bold"), f"{where} from project {target}")
    )
