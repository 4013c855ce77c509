"""Running the platform itself: ``up``, ``service``, ``projector rebuild``, ``doctor``, ``demo``.

These commands call into :mod:`crewyard.platform` and the runner's backends, imported inside each
command so that the API commands start fast and do not load NATS, SQLite or docker.
Misconfiguration and the platform's own expected errors (everything derived from
:class:`crewyard.errors.CrewyardError`, and OSError) become one red line; Ctrl-C stops the
platform quietly (exit 130).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich import box
from rich.table import Table
from rich.text import Text

from crewyard.errors import CrewyardError

from ._client import CliError
from .render import make_console

if TYPE_CHECKING:
    from crewyard.settings import Settings

T = TypeVar("T")
SERVICES = ("builder", "runner", "projector", "gateway", "notifier", "scheduler")
BACKENDS = ("auto", "docker", "bwrap", "process")

data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="CREWYARD_DATA_DIR",
    show_envvar=True,
    help="Where the platform keeps its data (default: ./.crewyard).",
)
nats_option = click.option(
    "--nats", "nats_url", metavar="URL", help="NATS server to use, e.g. nats://10.0.0.5:4222."
)
nats_creds_option = click.option(
    "--nats-creds",
    metavar="PATH",
    envvar="CREWYARD_NATS_CREDS",
    show_envvar=True,
    help="NATS credentials: a .creds file, or a folder of <service>.creds files "
    "(default: the data dir's, written by crewyard up / crewyard nats init).",
)
port_option = click.option(
    "--port", type=click.IntRange(1, 65535), help="HTTP port of the API (default: 8080)."
)
host_option = click.option(
    "--host",
    metavar="HOST",
    help="Interface the API (or health listener) listens on (default: 127.0.0.1).",
)
log_level_option = click.option(
    "--log-level",
    type=click.Choice(("debug", "info", "warning", "error")),
    envvar="CREWYARD_LOG_LEVEL",
    help="How much the platform logs (default: warning for up and demo, info for service).",
)
json_logs_option = click.option(
    "--json",
    "json_logs",
    is_flag=True,
    help="Log JSON lines with run and deployment ids instead of text (CREWYARD_LOG_FORMAT=json).",
)
no_auth_option = click.option(
    "--no-auth",
    is_flag=True,
    help="Serve the API without API keys, for throw-away local use only: it then listens on"
    " loopback and refuses any other --host (CREWYARD_AUTH=false).",
)
backend_option = click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    help="How runs are isolated (default: auto — docker, else bwrap; 'process' is NOT isolated and"
    " is used only when chosen here, for development).",
)


@contextmanager
def _platform_errors() -> Iterator[None]:
    try:
        yield
    except KeyboardInterrupt:
        raise click.exceptions.Exit(130) from None
    except (CrewyardError, OSError) as exc:  # expected: configuration, broker, backends, files
        raise CliError(str(exc) or type(exc).__name__) from None


def _load_settings(data_dir: Path | None, **overrides: Any) -> Settings:
    from crewyard.settings import load

    with _platform_errors():
        return load(data_dir, **overrides)


def settings_here(data_dir: Path | None, nats_url: str | None, nats_creds: str | None) -> Settings:
    """Settings for a command run beside a platform: without --nats or CREWYARD_NATS_URL, the
    NATS of the data dir's ``crewyard up`` (its nats.url: the embedded broker may have any port)."""
    settings = _load_settings(data_dir, nats_url=nats_url, nats_creds=nats_creds)
    url_file = settings.data_dir / "nats.url"
    if not nats_url and not os.environ.get("CREWYARD_NATS_URL"):
        with contextlib.suppress(OSError, UnicodeDecodeError):
            settings.nats_url = url_file.read_text().strip() or settings.nats_url
    return settings


def _logging(level: str | None, json_logs: bool) -> dict[str, Any]:
    return {"log_level": level, "log_format": "json" if json_logs else None}


def _run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    with _platform_errors():
        return asyncio.run(main())


@click.command()
@data_dir_option
@port_option
@host_option
@backend_option
@nats_option
@log_level_option
@json_logs_option
@nats_creds_option
@no_auth_option
def up(
    data_dir: Path | None,
    port: int | None,
    host: str | None,
    backend: str | None,
    nats_url: str | None,
    log_level: str | None,
    json_logs: bool,
    nats_creds: str | None,
    no_auth: bool,
) -> None:
    """Start the whole platform on this machine (NATS, services, API) until Ctrl-C.

    Every API route but /healthz, /readyz, the API documents and trigger URLs needs an API key.
    The first start prints an admin key once and keeps it in <data dir>/admin.key (readable by
    you only), where the CLI on this machine finds it.

    Without --nats an embedded nats-server is started with its data under --data-dir. It accepts
    no client without credentials; each service connects as its own user (credentials in
    <data dir>/nats/auth/creds, readable by you only).

    \b
    Examples:
      crewyard up
      crewyard up --data-dir /srv/crewyard --port 9000 --host 0.0.0.0 --backend bwrap
      crewyard up --no-auth          # throw-away, loopback only
    """
    settings = _load_settings(
        data_dir,
        port=port,
        host=host,
        backend=backend,
        nats_url=nats_url,
        nats_creds=nats_creds,
        auth=False if no_auth else None,
        **_logging(log_level, json_logs),
    )
    from crewyard import platform

    _run(lambda: platform.up(settings, embedded_nats=not nats_url))


@click.command()
@click.argument("name", type=click.Choice(SERVICES))
@nats_option
@nats_creds_option
@data_dir_option
@port_option
@host_option
@backend_option
@log_level_option
@json_logs_option
@click.option(
    "--health-port",
    type=click.IntRange(0, 65535),
    help="Port of the /healthz, /readyz and /metrics listener of every service but the gateway "
    "(env CREWYARD_HEALTH_PORT; default 0: any free port, printed at start).",
)
@no_auth_option
def service(
    name: str,
    nats_url: str | None,
    nats_creds: str | None,
    data_dir: Path | None,
    port: int | None,
    host: str | None,
    backend: str | None,
    log_level: str | None,
    json_logs: bool,
    health_port: int | None,
    no_auth: bool,
) -> None:
    """Run one service on its own, against a shared NATS server (for several machines).

    Any number of instances of each may run: builders, runners, notifiers (outgoing webhooks)
    and schedulers share durable consumers; each gateway host runs a projector beside it. Each
    service connects as its own NATS user (see `crewyard nats init`).

    It waits for NATS and the event stream if they are not there yet. It answers GET /healthz
    (alive) and GET /readyz (ready: JetStream reachable and writable, read model caught up) for
    probes: the gateway on its API port, the other services on --health-port.

    \b
    Examples:
      crewyard service runner --nats nats://nats.internal:4222 --nats-creds /run/secrets/runner.creds \
        --health-port 8081 --host 0.0.0.0
      crewyard service gateway --nats nats://nats.internal:4222 --port 8080 --host 0.0.0.0
      crewyard service notifier --nats nats://nats.internal:4222

    A gateway that finds no API key at all makes the first admin key (printed once, and kept in
    its data dir's admin.key), or registers the one in CREWYARD_ADMIN_KEY_FILE
    (see crewyard keys generate).
    """
    settings = _load_settings(
        data_dir,
        port=port,
        host=host,
        backend=backend,
        nats_url=nats_url,
        nats_creds=nats_creds,
        health_port=health_port,
        auth=False if no_auth else None,
        **_logging(log_level, json_logs),
    )
    from crewyard import platform

    _run(lambda: platform.run_service(name, settings))


@click.group()
def projector() -> None:
    """Maintain the read model that the API answers queries from."""


@projector.command("rebuild")
@data_dir_option
@nats_option
@click.option("--json", "as_json", is_flag=True, help='Print {"events": N} instead of a sentence.')
@nats_creds_option
def rebuild(data_dir: Path | None, nats_url: str | None, as_json: bool, nats_creds: str | None) -> None:
    """Rebuild the read model by replaying the event stream from the start.

    Uses the NATS of the data dir's `crewyard up` unless --nats says another. Ctrl-C stops it
    with the read model unchanged (exit 130; 143 on SIGTERM).

    \b
    Example:
      crewyard projector rebuild --data-dir /srv/crewyard
    """
    settings = settings_here(data_dir, nats_url, nats_creds)
    from crewyard import platform

    async def main() -> int:
        try:
            return await platform.rebuild_projection(settings)
        except platform.Interrupted as stopped:  # never "rebuilt from 0 events"
            CliError(f"{stopped}: the read model is unchanged; run it again to rebuild").show()
            raise click.exceptions.Exit(128 + stopped.signum) from None

    count = _run(main)
    if as_json:
        click.echo(json.dumps({"events": count}))
        return
    make_console().print(Text.assemble(("✓ ", "green"), f"read model rebuilt from {count} events"))


@click.command()
@click.option(
    "--docker-host", metavar="URL", help="Container engine to check, e.g. unix:///run/podman/podman.sock."
)
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.pass_context
def doctor(ctx: click.Context, docker_host: str | None, as_json: bool) -> None:
    """Check which run isolation backends work here, which Pythons crews can use, and Node.js.

    \b
    Example:
      crewyard doctor --docker-host unix:///run/podman/podman.sock
    """
    settings = _load_settings(None, docker_host=docker_host)
    from crewyard.runner.backends import doctor as check

    with _platform_errors():
        results = list(check(settings))
    from crewyard.environments import nodejs, pythons

    found = pythons.available()
    node = nodejs.installed()
    node_usable = node is not None and node.major >= nodejs.MIN_MAJOR and node.npm is not None
    if as_json:
        backends = [{"name": i.name, "usable": i.usable, "reason": i.reason} for i in results]
        click.echo(
            json.dumps(
                {
                    "backends": backends,
                    "pythons": [{"version": i.version, "path": str(i.path)} for i in found],
                    "node": {
                        "usable": node_usable,
                        "version": node.version if node else None,
                        "path": node.path if node else None,
                        "reason": nodejs.describe(),
                    },
                }
            )
        )
        ctx.exit(0 if any(item.usable for item in results) else 1)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("BACKEND", style="bold")
    table.add_column("USABLE")
    table.add_column("DETAILS")
    for item in results:
        table.add_row(
            item.name,
            Text("yes", style="green") if item.usable else Text("no", style="red"),
            Text(item.reason or ""),
        )
    console = make_console()
    console.print(table)
    console.print(
        'Pythons for crews (python = "X.Y" in the crew\'s config; the docker backend uses its'
        " base image's): " + (", ".join(f"{i.version} ({i.path})" for i in found) or "none found")
    )
    console.print(
        Text.assemble(
            "Node.js for langgraph-js crews (bwrap and process; the docker backend uses its Node base"
            " image's): ",
            (nodejs.describe(), "" if node_usable else "yellow"),
        )
    )
    if not any(item.usable for item in results):
        ctx.exit(1)


@click.command()
@data_dir_option
@port_option
@host_option
@backend_option
@log_level_option
@json_logs_option
@no_auth_option
def demo(
    data_dir: Path | None,
    port: int | None,
    host: str | None,
    backend: str | None,
    log_level: str | None,
    json_logs: bool,
    no_auth: bool,
) -> None:
    """Start the platform, deploy the example crew and run it, then keep serving until Ctrl-C.

    \b
    Example:
      crewyard demo --data-dir .crewyard --port 8080
    """
    settings = _load_settings(
        data_dir,
        port=port,
        host=host,
        backend=backend,
        auth=False if no_auth else None,
        **_logging(log_level, json_logs),
    )
    from crewyard import platform

    _run(lambda: platform.demo(settings))
