"""``crewyard login`` / ``logout`` (which key the CLI sends to which API) and ``crewyard keys``
(API keys: create, list, revoke; ``generate`` makes an operator's first admin key offline)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
import msgspec
from rich.text import Text

from crewyard.contract.keys import Identity, Key, KeyCreate, KeyList
from crewyard.core.access import ROLES, new_token, well_formed

from ._client import CliError, connect, decoded, seg
from ._credentials import config_path, config_to_change, normalize, save_config
from ._options import api_option, id_argument, json_option, project_name
from .consumers import expiry
from .render import done, listing_table, make_console, print_json


def _read_key(from_stdin: bool) -> str:
    if from_stdin or not sys.stdin.isatty():
        token = sys.stdin.readline().strip()
    else:
        token = click.prompt("API key", hide_input=True).strip()
    if not well_formed(token):
        raise CliError("that is not a crewyard API key (they read cyk_ and 43 letters, digits, - or _)")
    return token


@click.command()
@api_option
@click.option("--key-stdin", is_flag=True, help="Read the key from stdin instead of asking for it.")
@json_option
def login(api_url: str, key_stdin: bool, as_json: bool) -> None:
    """Store the API to use and its key in your config file (readable by you only).

    The key is checked against the API first. Later commands use this API when no --api or
    CREWYARD_API is given, and send this key to it (CREWYARD_API_KEY still wins).

    \b
    Examples:
      crewyard login --api https://crewyard.example.com          # asks for the key
      echo "$KEY" | crewyard login --api https://crewyard.example.com --key-stdin
    """
    token = _read_key(key_stdin)
    config = config_to_change()  # before the API is asked: a damaged file fails at once
    with connect(api_url, token) as client:
        identity = decoded(client.call("GET", "/v1/whoami"), Identity)
    config.api = normalize(api_url)
    config.keys[normalize(api_url)] = token
    path = save_config(config)
    who = "(this API runs without keys)"
    if identity.key is not None:
        scope = identity.key.project or "every project"
        who = f"as {identity.key.name} ({identity.key.id}): {identity.key.role} on {scope}"
    record = {"api": normalize(api_url), "config": str(path), "identity": msgspec.to_builtins(identity)}
    done(as_json, record, f"logged in to {normalize(api_url)} {who} → {path}")


@click.command()
@api_option
@json_option
def logout(api_url: str, as_json: bool) -> None:
    """Forget the key stored for an API (the key itself stays valid: revoke it to end it)."""
    config = config_to_change()
    removed = config.keys.pop(normalize(api_url), None)
    if config.api == normalize(api_url):
        config.api = None
    save_config(config)
    said = "forgot the key of" if removed else "no key was stored for"
    record = {"api": normalize(api_url), "config": str(config_path()), "forgotten": removed is not None}
    done(as_json, record, f"{said} {normalize(api_url)} ({config_path()})")


@click.group()
def keys() -> None:
    """API keys: who may call the API, with which role, on which project.

    Roles, narrowest first: read (see runs, events, artifacts, deployments), run (also invoke
    and cancel), deploy (also deploy, roll back, env, limits, webhooks, triggers, schedules),
    admin (also keys and consumers). A key without --project covers every project; a key can
    only create keys no wider than itself, expiring when it does or before.

    \b
    Examples:
      crewyard keys create --project research --role deploy --name ci --expires 30d
      crewyard keys list --project research
      crewyard keys revoke key_0123…
      crewyard keys revoke key_0123… --cascade   # and every key made from it
    """


@keys.command("create")
@click.option("--role", type=click.Choice(ROLES), required=True, help="What the key may do.")
@click.option(
    "--project",
    "-p",
    metavar="NAME",
    callback=project_name,
    help="The one project it covers (default: every one).",
)
@click.option("--name", default="key", show_default=True, help="A name to recognise it by, e.g. ci.")
@click.option("--expires", metavar="DURATION", help="Refuse the key after e.g. 30d, 12h, 90m.")
@json_option
@api_option
def create(
    role: str, project: str | None, name: str, expires: str | None, as_json: bool, api_url: str
) -> None:
    """Create a key; it is printed this once (only its hash is kept)."""
    until = expiry(expires)
    body = KeyCreate(role=role, project=project, name=name, expires_at=until)  # type: ignore[arg-type]
    with connect(api_url) as client:
        key = decoded(client.call("POST", "/v1/keys", json=msgspec.to_builtins(body)), Key)
    if as_json:
        print_json(msgspec.to_builtins(key))
        return
    console = make_console()
    console.print(
        Text.assemble(
            ("✓ ", "green"), f"key {key.id} ({key.name}): {key.role} on {key.project or 'every project'}"
        )
    )
    console.print("  The key (shown this once):", highlight=False)
    click.echo(f"  {key.token}")


@keys.command("list")
@click.option("--project", "-p", metavar="NAME", callback=project_name, help="Only the keys of this project.")
@json_option
@api_option
def list_(project: str | None, as_json: bool, api_url: str) -> None:
    """Every key you may manage, revoked ones included — never the keys themselves."""
    with connect(api_url) as client:
        found = decoded(client.call("GET", "/v1/keys", params={"project": project}), KeyList)
    if as_json:
        print_json(msgspec.to_builtins(found))
        return
    table = listing_table(*("ID", "NAME", "ROLE", "PROJECT", "CREATED", "LAST USED", "EXPIRES", "REVOKED"))
    for key in found.keys:
        table.add_row(
            key.id,
            key.name,
            key.role,
            key.project or "(every project)",
            f"{key.created_at:%Y-%m-%d %H:%M}",
            (key.last_used_at or "never")[:16].replace("T", " "),
            f"{key.expires_at:%Y-%m-%d %H:%M}" if key.expires_at else "never",
            f"{key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "",
        )
    make_console().print(table)


@keys.command("revoke")
@id_argument("key_id", "key")
@click.option(
    "--cascade",
    is_flag=True,
    help="Also revoke the keys made from it (by it, by those, and so on): for a key that leaked.",
)
@json_option
@api_option
def revoke(key_id: str, cascade: bool, as_json: bool, api_url: str) -> None:
    """Revoke a key: every gateway refuses it within about a second."""
    params = {"cascade": "true"} if cascade else None
    with connect(api_url) as client:
        key = decoded(client.call("DELETE", f"/v1/keys/{seg(key_id)}", params=params), Key)
    others = key.revoked_with or []
    message = f"key {key_id} revoked"
    if cascade:
        message += (
            f", and the {len(others)} made from it: {', '.join(others)}"
            if others
            else " (no key was made from it)"
        )
    done(as_json, {"id": key_id, "revoked": True, "revoked_with": others}, message)


@keys.command("generate")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the key to this file (readable by you only) instead of printing it.",
)
@json_option
def generate(output: Path | None, as_json: bool) -> None:
    """Make a new key offline, for a platform's first admin key (no API involved).

    Give the file to every gateway as CREWYARD_ADMIN_KEY_FILE: the first gateway that finds no
    key at all registers it (only its hash) as the platform-wide admin key.

    \b
    Example:
      crewyard keys generate -o admin.key && kubectl create secret generic crewyard-admin-key \\
        --from-file=admin.key
    """
    token = new_token()
    if output is None:
        if as_json:
            print_json({"key": token})
        else:
            click.echo(token)
        return
    try:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise CliError(
            f"cannot write {output}: {exc.strerror or exc} (an existing file is never replaced)"
        ) from None
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    done(as_json, {"output": str(output)}, f"a new API key → {output}")
