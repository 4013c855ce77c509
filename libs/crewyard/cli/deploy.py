"""Shipping a crew: ``deploy`` (pack, upload, follow the build), ``deploy --rollback``, and
``deployments list|logs``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing, nullcontext
from pathlib import Path
from typing import Any

import click
import msgspec
from rich import box
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table
from rich.text import Text

from crewyard.client import Client, Deployment

from . import versions
from ._client import CliError, connect
from ._options import api_option, folder_project, id_argument, json_option, project_option, resolve_project
from .render import (
    decode_event,
    human_duration,
    human_size,
    local_time,
    make_console,
    print_json,
    print_ndjson_event,
    status_text,
)
from .versions import env_option

_CHUNK = 64 * 1024


@click.command()
@click.argument("path", default=".", type=click.Path(exists=True, file_okay=False, path_type=Path))
@project_option
@click.option(
    "--name", "-n", metavar="DEPLOYMENT", help="Deploy only [deployments.DEPLOYMENT] of the config file."
)
@env_option
@click.option("--no-wait", is_flag=True, help="Return once uploaded instead of following the build.")
@click.option(
    "--rollback",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[VERSION_ID]",
    help="Move --env back to VERSION_ID, or to the version it ran before (uploads nothing).",
)
@json_option
@api_option
@click.pass_context
def deploy(
    ctx: click.Context,
    path: Path,
    project: str | None,
    name: str | None,
    environment: str | None,
    no_wait: bool,
    rollback: str | None,
    as_json: bool,
    api_url: str,
) -> None:
    """Build and deploy the crew in PATH (default: here) as a new immutable version.

    Reads crewyard.toml (or crewship.toml, or a LangGraph project's langgraph.json), uploads the
    folder without the [build] exclude paths and what its .gitignore files ignore (node_modules
    never goes: the build installs dependencies), and shows the build log until the version is
    ready; then --env (production by default) runs it. Each deploy is a new version (1, 2, 3…)
    of its deployment name ([deployments.<name>], or "default"). The project is --project, else
    the deployment's name in a [deployments.<name>] file, else the folder's name. A file with
    several [deployments.<name>] deploys each of them unless --name picks one. With --json: the
    build's events as JSON lines, then the deployment as one JSON line (with --no-wait, only the
    deployment).

    \b
    Examples:
      crewyard deploy --project research
      crewyard deploy --env staging --project research     # production keeps running its version
      crewyard deploy ./crews --name support-agent
      crewyard deploy --rollback --project research        # production: back to the previous version
      crewyard deploy --rollback dep_01j9zq6m8k2v3w4x5y6z7a8b9c --project research
    """
    console = make_console(stderr=as_json)
    if rollback is not None:
        target = resolve_project(project, path, name)
        with connect(api_url) as client:
            versions.rollback(client, target, rollback, name, environment, as_json=as_json)
        return

    from crewyard.core.crewfile import CrewConfig, CrewConfigError, parse
    from crewyard.packaging import find_config

    try:
        config_path = find_config(path)
        parsed = parse(config_path.read_text(encoding="utf-8"), config_path.name)
        targets: list[CrewConfig] = (
            [parsed.select(name)] if name or len(parsed.deployments) == 1 else parsed.deployments
        )
    except CrewConfigError as exc:
        raise CliError(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read the crew configuration in {str(path)!r}: {exc}") from None
    for warning in parsed.warnings:
        console.print(Text(f"warning: {warning}", style="yellow"))
    if len(targets) > 1:
        console.print(f"{config_path.name} defines {len(targets)} deployments; deploying each in turn.")

    failed: list[str] = []
    with connect(api_url) as client:
        for cfg in targets:
            target = project or cfg.name or folder_project(path)
            if not _deploy_one(
                client, console, path, cfg, target, environment, wait=not no_wait, as_json=as_json
            ):
                failed.append(cfg.name or target)
    if failed and len(targets) > 1:
        console.print(
            Text(f"{len(failed)} of {len(targets)} deployments failed: {', '.join(failed)}", style="red")
        )
    if failed:
        ctx.exit(1)


def _deploy_one(
    client: Client,
    console: Console,
    folder: Path,
    cfg: Any,
    project: str,
    environment: str | None,
    *,
    wait: bool,
    as_json: bool,
) -> bool:
    from crewyard.packaging import pack

    try:
        archive = pack(folder, cfg.exclude)
    except OSError as exc:
        raise CliError(f"cannot pack {str(folder)!r}: {exc}") from None
    label = f" ({cfg.name})" if cfg.name else ""
    console.print(
        Text.assemble(
            "Deploying ",
            (str(folder.resolve().name), "bold"),
            label,
            " to project ",
            (project, "bold"),
            f" — {human_size(len(archive))}",
        )
    )
    answer = _upload(client, console, project, archive, cfg.name, environment)
    dep_id = answer.deployment_id
    if not wait:
        if as_json:
            print_json(answer)
            return True
        console.print(Text.assemble("Deployment ", (dep_id, "cyan"), " is ", status_text(answer.status)))
        console.print(Text(f"  build log: crewyard deployments logs {dep_id}", style="dim"))
        return True
    return follow_build(client, console, dep_id, project, as_json=as_json, upload=answer)


def _upload(
    client: Client, console: Console, project: str, data: bytes, name: str | None, environment: str | None
) -> Deployment:
    if not console.is_terminal:
        return client.deploy(project, data, name=name, environment=environment)
    columns = (TextColumn("  uploading"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("upload", total=len(data))
        body = _chunks(data, lambda n: progress.advance(task, n))
        return client.deploy(project, body, size=len(data), name=name, environment=environment)


def print_ndjson_deployment(deployment: Deployment) -> None:
    click.echo(msgspec.json.encode(deployment).decode())


def _chunks(data: bytes, advance: Callable[[int], None]) -> Iterator[bytes]:
    for start in range(0, len(data), _CHUNK):
        chunk = data[start : start + _CHUNK]
        yield chunk
        advance(len(chunk))


def follow_build(
    client: Client,
    console: Console,
    dep_id: str,
    project: str | None,
    *,
    as_json: bool = False,
    upload: Deployment | None = None,
) -> bool:
    """Show a deployment's build log until it is ready (True) or failed (False); ``upload`` is the
    API's answer to the upload (version number, environment) when this command made it."""
    result: dict[str, Any] = {}

    def build_is_over() -> bool:
        # The stream closed without a final event: ask the read model how the build ended.
        dep = client.get_deployment(dep_id)
        if dep.status in ("ready", "failed"):
            result.update(msgspec.to_builtins(dep))
            return True
        return False

    events = client.build_log(dep_id)
    events.on_eof = build_is_over
    spinner = console.status(f"building {dep_id}…") if console.is_terminal and not as_json else nullcontext()
    try:
        with spinner, closing(events.messages()) as messages:
            for msg in messages:
                event = decode_event(msg)
                data = event.data
                if as_json:
                    print_ndjson_event(msg)
                if event.type in ("deployment.ready", "deployment.failed"):
                    result.update(data, status="ready" if event.type == "deployment.ready" else "failed")
                    break
                if as_json:
                    continue
                if event.type == "deployment.build.log":
                    console.print(Text(f"  {data.get('line', '')}", style="dim"))
                elif event.type == "deployment.build.started":
                    console.print(
                        Text(f"  building with the {data.get('backend', '?')} backend", style="dim")
                    )
    except KeyboardInterrupt:
        console.print()
        console.print(Text(f"Stopped following the build of {dep_id}; it goes on.", style="yellow"))
        console.print(Text(f"Resume with: crewyard deployments logs {dep_id}", style="dim"))
        raise click.exceptions.Exit(130) from None
    if as_json:
        print_ndjson_deployment(client.get_deployment(dep_id))
        return result.get("status") == "ready"
    if result.get("status") != "ready":
        reason = result.get("error_message") or "the build ended without saying why"
        console.print(
            Text.assemble(("✗ Build of ", "red"), (dep_id, "red bold"), (f" failed: {reason}", "red"))
        )
        return False
    note = (
        "reused a cached build"
        if result.get("cached")
        else f"built in {human_duration(result.get('duration_ms'))}"
    )
    where = f" (project {project})" if project else ""
    env = (upload.environment if upload else None) or "production"
    if upload is not None and upload.version_number:
        where = f" — version {upload.version_number} in {env}{where}"
    console.print(
        Text.assemble(
            ("✓ Deployed ", "green"), (dep_id, "green bold"), (where, "green"), (f"  {note}", "dim")
        )
    )
    if project:
        flag = f" --env {env}" if env != "production" else ""
        console.print(
            Text(f"  run it: crewyard invoke --project {project}{flag} -i '{{}}' --stream", style="dim")
        )
    return True


@click.group()
def deployments() -> None:
    """List a project's deployments and show build logs.

    \b
    Examples:
      crewyard deployments list --project research
      crewyard deployments logs dep_01j9zq6m8k2v3w4x5y6z7a8b9c
    """


@deployments.command("list")
@project_option
@click.option("--name", "-n", "name", metavar="DEPLOYMENT", help="Only this deployment name's versions.")
@json_option
@api_option
def list_deployments(project: str | None, name: str | None, as_json: bool, api_url: str) -> None:
    """List a project's versions, newest first; ● marks what production runs.

    ENVIRONMENTS says which environments run each version (move them with `crewyard promote`
    and `crewyard deploy --rollback`).

    \b
    Example:
      crewyard deployments list --project research
    """
    target = resolve_project(project, name=name)
    with connect(api_url) as client:
        items = client.list_deployments(target, name)
    if as_json:
        print_json({"deployments": items})
        return
    console = make_console()
    if not items:
        console.print(f"No deployments in project {target} yet (crewyard deploy --project {target}).")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("", width=1)
    table.add_column("DEPLOYMENT", no_wrap=True, style="cyan")
    table.add_column("NAME", no_wrap=True)
    table.add_column("VERSION", justify="right")
    table.add_column("STATUS")
    table.add_column("ENVIRONMENTS")
    table.add_column("CREATED", no_wrap=True)
    table.add_column("NOTE")
    for dep in items:
        notes = []
        if dep.cached:
            notes.append("cached build")
        if dep.error_message:
            notes.append(dep.error_message)
        table.add_row(
            Text("●", style="green") if dep.current else "",
            dep.deployment_id,
            dep.name or "",
            str(dep.version_number or ""),
            status_text(dep.status),
            Text(", ".join(dep.environments), style="green"),
            local_time(dep.created_at),
            Text("; ".join(notes), style="red" if dep.error_message else "dim"),
        )
    console.print(table)


@deployments.command("logs")
@id_argument("deployment_id")
@json_option
@api_option
@click.pass_context
def deployment_logs(ctx: click.Context, deployment_id: str, as_json: bool, api_url: str) -> None:
    """Show a deployment's build log (live while it builds).

    Exits with 0 when the deployment is ready, 1 when its build failed. With --json: the build's
    events as JSON lines, then the deployment as one JSON line.

    \b
    Example:
      crewyard deployments logs dep_01j9zq6m8k2v3w4x5y6z7a8b9c
    """
    with connect(api_url) as client:
        ok = follow_build(client, make_console(), deployment_id, None, as_json=as_json)
    ctx.exit(0 if ok else 1)
