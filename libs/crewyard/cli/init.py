"""``init``: write a ``crewyard.toml`` for a crew folder, detecting what it can."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import click
from rich.text import Text

from ._client import CliError
from .render import make_console

_ENTRYPOINT_RE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


@click.command()
@click.argument("path", default=".", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--framework", metavar="NAME", help="crewai, langgraph or python (default: detected).")
@click.option(
    "--entrypoint", metavar="MODULE:ATTR", help="What to run, e.g. my_crew.crew:MyCrew (default: detected)."
)
@click.option(
    "--python", "python_version", metavar="X.Y", help="Python version for the crew (default: this one)."
)
@click.option("--force", is_flag=True, help="Overwrite an existing crewyard.toml.")
@click.option("--no-input", is_flag=True, help="Never prompt; fail when something cannot be detected.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON (implies --no-input).")
def init(
    path: Path,
    framework: str | None,
    entrypoint: str | None,
    python_version: str | None,
    force: bool,
    no_input: bool,
    as_json: bool,
) -> None:
    """Write crewyard.toml for the crew in PATH (default: here).

    The framework (CrewAI, LangGraph or plain Python) and the entrypoint are detected from the
    code; what cannot be detected is asked for, or given with --framework / --entrypoint.

    \b
    Examples:
      crewyard init
      crewyard init ./my-crew --framework crewai --entrypoint my_crew.crew:MyCrew --no-input
    """
    from crewyard.core.crewfile import CONFIG_FILES, FRAMEWORKS, CrewConfigError, parse
    from crewyard.core.detect import detect, render_config

    console = make_console(stderr=as_json)
    no_input = no_input or as_json
    existing = [name for name in CONFIG_FILES if (path / name).exists()]
    if existing and not force:
        if existing[0] == "crewship.toml":
            raise CliError(
                f"{path / existing[0]} already exists and crewyard reads it as is "
                "(use --force to write crewyard.toml anyway)"
            )
        raise CliError(f"{path / existing[0]} already exists (use --force to overwrite it)")
    if framework is not None and framework not in FRAMEWORKS:
        raise CliError(f"--framework must be one of {', '.join(FRAMEWORKS)}, got {framework!r}")
    if entrypoint is not None and not _ENTRYPOINT_RE.fullmatch(entrypoint):
        raise CliError(f"--entrypoint must look like 'package.module:attribute', got {entrypoint!r}")

    if framework is None or entrypoint is None:
        found = detect(path)
        if found is not None:
            console.print(
                Text(f"detected {found.framework} crew at {found.entrypoint} ({found.reason})", style="dim")
            )
            framework = framework or found.framework
            entrypoint = entrypoint or found.entrypoint
        elif no_input:
            raise CliError(
                f"could not detect the crew's framework and entrypoint in {str(path)!r}; "
                "pass --framework and --entrypoint"
            )
        else:
            console.print(Text("Could not detect the crew; tell me about it:", style="yellow"))
            if framework is None:
                framework = click.prompt("Framework", type=click.Choice(FRAMEWORKS), default="python")
            if entrypoint is None:
                entrypoint = click.prompt("Entrypoint (module:attribute)", value_proc=_entrypoint)
    assert framework is not None and entrypoint is not None
    python_version = python_version or f"{sys.version_info.major}.{sys.version_info.minor}"

    try:
        # Checked again here: never write a file that deploy would then reject.
        text = render_config(framework, entrypoint, python_version)
        parse(text, "crewyard.toml")
    except CrewConfigError as exc:
        raise CliError(str(exc)) from None
    target = path / "crewyard.toml"
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot write {target}: {exc.strerror or exc}") from None
    if as_json:
        written = {
            "path": str(target),
            "framework": framework,
            "entrypoint": entrypoint,
            "python": python_version,
        }
        click.echo(json.dumps(written))
        return
    console.print(Text.assemble(("✓ ", "green"), f"wrote {target}"))
    console.print(
        Text(
            f"  next: crewyard deploy {path}" if str(path) != "." else "  next: crewyard deploy", style="dim"
        )
    )


def _entrypoint(value: str) -> str:
    if not _ENTRYPOINT_RE.fullmatch(value):
        raise click.BadParameter("expected package.module:attribute, e.g. my_crew.crew:MyCrew")
    return value
