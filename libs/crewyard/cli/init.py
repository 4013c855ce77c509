"""``init``: write a ``crewyard.toml`` for a crew folder, detecting what it can."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.text import Text

from ._client import CliError
from .render import make_console


@click.command()
@click.argument("path", default=".", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--framework", metavar="NAME", help="crewai, langgraph, langgraph-js or python (default: detected)."
)
@click.option(
    "--entrypoint",
    metavar="MODULE:ATTR",
    help="What to run, e.g. my_crew.crew:MyCrew or ./src/graph.ts:graph (default: detected).",
)
@click.option(
    "--python",
    "python_version",
    metavar="X.Y",
    help="Python version for a Python crew (default: this one; not used for langgraph-js).",
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

    The framework (CrewAI, LangGraph, LangGraph.js or plain Python) and the entrypoint are
    detected from the code (a langgraph.json, a package.json depending on @langchain/langgraph,
    CrewAI's and LangGraph's Python layouts); what cannot be detected is asked for, or given with
    --framework / --entrypoint.

    \b
    Examples:
      crewyard init
      crewyard init ./my-crew --framework crewai --entrypoint my_crew.crew:MyCrew --no-input
      crewyard init ./my-graph --framework langgraph-js --entrypoint ./src/graph.ts:graph --no-input
    """
    from crewyard.core import entrypoints
    from crewyard.core.crewfile import CONFIG_FILES, FRAMEWORKS, CrewConfigError, parse
    from crewyard.core.detect import detect, render_config

    console = make_console(stderr=as_json)
    no_input = no_input or as_json
    # A langgraph.json is read when there is no TOML file, and init writes one from it.
    existing = [name for name in CONFIG_FILES if name.endswith(".toml") and (path / name).exists()]
    if existing and not force:
        if existing[0] == "crewship.toml":
            raise CliError(
                f"{path / existing[0]} already exists and crewyard reads it as is "
                "(use --force to write crewyard.toml anyway)"
            )
        raise CliError(f"{path / existing[0]} already exists (use --force to overwrite it)")
    if framework is not None and framework not in FRAMEWORKS:
        raise CliError(f"--framework must be one of {', '.join(FRAMEWORKS)}, got {framework!r}")
    if entrypoint is not None and framework is not None:
        problem = entrypoints.problem(framework, entrypoint)
        if problem is not None:
            raise CliError(f"--entrypoint {problem}, got {entrypoint!r}")

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
            try:
                if framework is None:
                    framework = click.prompt("Framework", type=click.Choice(FRAMEWORKS), default="python")
                if entrypoint is None:
                    js = framework in entrypoints.JS_FRAMEWORKS
                    entrypoint = click.prompt(
                        "Entrypoint (./file.ts:export)" if js else "Entrypoint (module:attribute)",
                        value_proc=lambda value: _entrypoint(str(framework), value),
                    )
            except click.Abort as exc:  # the input ended (no terminal, Ctrl-D) or Ctrl-C: nothing written
                console.print()
                if isinstance(exc.__context__, KeyboardInterrupt):  # (click's prompt turns it into Abort)
                    raise SystemExit(130) from None
                raise CliError(
                    "no answer, nothing written: pass --framework and --entrypoint (and --no-input"
                    " where nothing can answer)"
                ) from None
    assert framework is not None and entrypoint is not None
    if framework in entrypoints.JS_FRAMEWORKS:
        python_version = None  # a JavaScript crew runs on Node
    else:
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


def _entrypoint(framework: str, value: str) -> str:
    from crewyard.core import entrypoints

    problem = entrypoints.problem(framework, value)
    if problem is not None:
        raise click.BadParameter(f"the entrypoint {problem}")
    return value
