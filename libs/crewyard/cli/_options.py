"""Options and argument handling shared by the API commands."""

from __future__ import annotations

import functools
import json
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import click

from crewyard.core.subjects import InvalidName, check_project_name

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


def project_name(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """A project name the platform could have, checked before anything is packed or sent."""
    if not value:
        return value
    try:
        return check_project_name(value)
    except InvalidName as exc:
        raise click.BadParameter(str(exc)) from None


project_option = click.option(
    "--project",
    "-p",
    envvar="CREWYARD_PROJECT",
    show_envvar=True,
    metavar="NAME",
    callback=project_name,
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

F = TypeVar("F", bound=Callable[..., Any])
_KINDS = {
    "run": "run",
    "thr": "thread",
    "whk": "webhook",
    "sch": "schedule",
    "trg": "trigger",
    "key": "API key",
    "con": "consumer",
}


def id_argument(name: str, prefix: str | None = None, **kwargs: Any) -> Callable[[F], F]:
    """A positional id, checked when the command runs (not when it parses, so that help examples
    may say ``thr_…``): a malformed one is one clear error (exit 1), never a request. An empty id
    or ``.`` would reach another route (``GET /v1/runs/`` is the listing) and its answer would
    read as a record. With ``prefix`` (run, thr, whk…) the id must be well formed, as the API itself
    requires; otherwise only a non-empty path segment is required."""

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def checked(*args: Any, **values: Any) -> Any:
            _check_id(values.get(name), name, prefix)
            return command(*args, **values)

        return cast(F, click.argument(name, **kwargs)(checked))

    return decorate


def _check_id(value: str | None, name: str, prefix: str | None) -> None:
    if value is None:
        return
    from crewyard.core.ids import is_id

    if prefix is not None and not is_id(value, prefix):
        from crewyard.core.access import TOKEN_PREFIX

        if value.startswith(TOKEN_PREFIX):  # a key itself (or most of one), pasted where its id goes
            raise CliError("that is an API key itself, not its id (key_…): see crewyard keys list")
        kind = _KINDS.get(prefix, prefix)
        article = "an" if kind[0] in "aeiouAEIOU" else "a"
        raise CliError(
            f"{value[:100]!r} is not {article} {kind} id (they read {prefix}_ and 26 letters and digits)"
        )
    if value.strip() in ("", ".", ".."):
        raise CliError(f"{value!r} is not a valid {name.upper()}")


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


def parse_input(text: str, option: str = "--input") -> dict[str, Any]:
    """The run input (or another JSON object ``option`` takes): inline JSON, ``@file.json`` or
    ``-`` (stdin); it must be a JSON object."""
    source = option
    if text == "-":
        text, source = _stdin_text(option), f"{option} from stdin"
    elif text.startswith("@"):
        path = Path(text[1:])
        try:
            text, source = path.read_text(encoding="utf-8"), f"the {option} file {str(path)!r}"
        except OSError as exc:
            raise CliError(f"cannot read the {option} file {str(path)!r}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise CliError(f"the {option} file {str(path)!r} is not UTF-8 text: {exc.reason}") from None
    value = parse_json(text, source)
    if not isinstance(value, dict):
        kind = _JSON_KINDS.get(type(value), type(value).__name__)
        raise CliError(f'{source} must be a JSON object like {{"topic": "AI"}}, not {kind}')
    return value


def _stdin_text(option: str) -> str:
    # Bytes, decoded here: a text stdin may decode with the locale's codec or surrogateescape.
    stream = getattr(sys.stdin, "buffer", None)
    try:
        return stream.read().decode("utf-8") if stream is not None else sys.stdin.read()
    except UnicodeDecodeError as exc:
        raise CliError(f"{option} from stdin is not UTF-8 text: {exc.reason}") from None


def utf8(text: str, what: str) -> str:
    """``text``, if a request can carry it, or one clear error naming ``what``, never quoting
    ``text`` (it may be a secret): an argument's bytes that are not UTF-8 are held as lone
    surrogates."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise CliError(f"{what} is not UTF-8 text (an argument in another encoding?)") from None
    return text


def parse_json(text: str, source: str) -> Any:
    """``text`` as strict JSON (what the API accepts), or one clear error naming ``source``: no
    NaN or Infinity, no number too large for a float, no unpaired surrogate, no endless nesting."""
    utf8(text, source)
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise CliError(f"{source} is nested too deeply") from None
    except ValueError as exc:
        raise CliError(f"{source} is not valid JSON: {exc}") from None
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise CliError(
            f"{source} is not valid JSON: it has an unpaired surrogate (\\ud800-\\udfff)"
        ) from None
    except RecursionError:
        raise CliError(f"{source} is nested too deeply") from None
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is too large")
    return value


_JSON_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
_JSON_KINDS[type(None)] = "null"
