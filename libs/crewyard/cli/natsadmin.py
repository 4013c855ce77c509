"""``crewyard nats init``: the NATS trust chain and credentials for a multi-machine setup.

``crewyard up`` makes its own in the data dir; a cluster needs the same files spread over
machines: the server part into every NATS node's configuration, each service's credentials to
that service only, the issuer keys to the gateways only, the root keys nowhere (kept offline).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

import click

from ._options import json_option
from .render import done


@click.group("nats")
def nats_group() -> None:
    """Credentials for the NATS servers the platform uses (several machines)."""


@nats_group.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--resolver-dir",
    default="/data/jwt",
    show_default=True,
    help="Where each NATS node keeps account JWTs (a folder on its own volume).",
)
@click.option(
    "--route",
    "routes",
    multiple=True,
    metavar="HOST:PORT",
    help="A cluster node's route address (repeat per node): also writes routes.conf, which makes "
    "nodes authenticate to each other.",
)
@json_option
def init(directory: Path, resolver_dir: str, routes: tuple[str, ...], as_json: bool) -> None:
    """Write the trust chain and every platform user's credentials into DIRECTORY.

    Run it again on the same DIRECTORY to issue fresh credentials (after an upgrade) under the
    same trust chain; running servers need no restart.

    \b
    DIRECTORY/server-auth.conf    include in every NATS node's config (no secrets in it)
    DIRECTORY/creds/<user>.creds  gateway, runner, builder, projector: one per service
                                  (CREWYARD_NATS_CREDS); admin: the operator's own
    DIRECTORY/issuer.json         gateways only (CREWYARD_NATS_ISSUER): issues and revokes
                                  outside consumers' credentials
    DIRECTORY/trust.json          root keys: keep offline
    DIRECTORY/routes.conf         with --route: include in every node's cluster block

    \b
    Example:
      crewyard nats init ./nats-secrets --route nats-1:6222 --route nats-2:6222 --route nats-3:6222
    """
    from crewyard import platform, settings
    from crewyard.auth import load_or_create, write_material

    names = platform.nats_names(settings.load(directory))
    trust = load_or_create(directory)
    write_material(directory, trust, names)
    (directory / "server-auth.conf").write_text(trust.server_config(Path(resolver_dir)))
    if routes:
        write_routes(directory / "routes.conf", routes)
    record = {
        "directory": str(directory),
        "server_config": str(directory / "server-auth.conf"),
        "creds": sorted(str(path) for path in (directory / "creds").glob("*.creds")),
        "routes": str(directory / "routes.conf") if routes else None,
    }
    done(as_json, record, f"NATS trust chain and credentials in {directory}")


def write_routes(path: Path, routes: Iterable[str]) -> None:
    """A cluster block include: a route password (kept if already made) and the routes using it,
    so that no one without it can join the cluster as a node and read every stream."""
    password = secrets.token_urlsafe(24)
    if path.exists():
        for line in path.read_text().splitlines():
            if line.startswith("authorization"):
                password = json.loads(line.split("password:", 1)[1].strip(" }"))
    lines = [
        "# Nodes authenticate to each other: nobody else can join the cluster.",
        f"authorization {{ user: route, password: {json.dumps(password)} }}",
        "routes: [",
        *(f'  "nats-route://route:{password}@{route}"' for route in routes),
        "]",
    ]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
