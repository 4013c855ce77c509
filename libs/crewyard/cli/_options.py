"""Options and argument handling shared by the API commands."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import click

from ._client import DEFAULT_API, CliError
from ._credentials import default_api

api_option = click.option(
    "--api",
    "api_url",
    envvar="CREWYARD_API",
    show_envvar=True,
    default=default_api,
    show_default=f"the one of crewyard login, else {DEFAULT_API}",
    metavar="URL",
    help="Base URL of the crewyard API.",
)
project_option = click.option(
    "--project",
    "-p",
    envvar="CREWYARD_PROJECT",
    show_envvar=True,
    metavar="NAME",
    help="Project to act on (default: the crew in the current folder).",
)
json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON for scripts (one JSON object per line for streams)."
)
name_option = click.option(
    "--name",
    "-n",
    "deployment_name",
    metavar="DEPLOYMENT",
    help="The [deployments.DEPLOYMENT] of the crew's config here: its project (as deploy --name).",
)

_SLUG_BAD = re.compile(r"[^a-z0-9_-]+")


def folder_project(folder: Path) -> str:
    """The project name a folder implies: ``My Crew`` → ``my-crew``."""
    name = _SLUG_BAD.sub("-", folder.resolve().name.lower()).strip("-_")
    if not name:
        raise CliError(f"cannot derive a project name from the folder {str(folder)!r}; pass --project NAME")
    return name[:63]


def resolve_project(project: str | None, folder: Path | None = None, name: str | None = None) -> str:
    """``--project`` / ``CREWYARD_PROJECT``, else the project of the crew in ``folder`` (default: cwd).

    The crew's project is the folder's name for a ``[deployment]`` file, or the deployment's name
    when the file has exactly one ``[deployments.<name>]`` (the reference product's rule), or
    ``name`` (``-n/--name``) when it picks one of several.
    """
    if project:
        return project
    if name:
        return _named_project(name, folder or Path.cwd())
    from crewyard.core.crewfile import CONFIG_FILES, CrewConfigError, parse

    here = folder or Path.cwd()
    for filename in CONFIG_FILES:
        path = here / filename
        if not path.is_file():
            continue
        try:
            deployments = parse(path.read_text(encoding="utf-8"), filename).deployments
        except (CrewConfigError, OSError, UnicodeDecodeError):
            return folder_project(here)
        if len(deployments) > 1:
            names = ", ".join(d.name or "?" for d in deployments)
            raise CliError(f"{filename} defines several deployments ({names}); choose one with --project")
        return deployments[0].name or folder_project(here)
    raise CliError("no project given: pass --project NAME or set CREWYARD_PROJECT")


def _named_project(name: str, here: Path) -> str:
    """The project of ``[deployments.<name>]`` (its name); checked against the config when there is one."""
    from crewyard.core.crewfile import CONFIG_FILES, CrewConfigError, parse

    for filename in CONFIG_FILES:
        path = here / filename
        if not path.is_file():
            continue
        try:
            deployments = parse(path.read_text(encoding="utf-8"), filename).deployments
        except (CrewConfigError, OSError, UnicodeDecodeError):
            return name
        names = [d.name for d in deployments if d.name]
        if names and name not in names:
            raise CliError(f"{filename} has no [deployments.{name}]; it has {', '.join(names)}")
        return name
    return name


def parse_input(text: str) -> dict[str, Any]:
    """The run input: inline JSON, ``@file.json`` or ``-`` (stdin); it must be a JSON object."""
    source = "--input"
    if text == "-":
        text, source = sys.stdin.read(), "stdin"
    elif text.startswith("@"):
        path = Path(text[1:])
        try:
            text, source = path.read_text(encoding="utf-8"), str(path)
        except OSError as exc:
            raise CliError(f"cannot read the input file {str(path)!r}: {exc.strerror or exc}") from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CliError(f"{source} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        kind = _JSON_KINDS.get(type(value), type(value).__name__)
        raise CliError(f'{source} must be a JSON object like {{"topic": "AI"}}, not {kind}')
    return value


_JSON_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
_JSON_KINDS[type(None)] = "null"
