"""``crewyard consumers create|list|revoke``: NATS credentials for outside consumers of a project.

Run where a gateway runs: it uses the gateway's NATS user and the issuer keys (the data dir's,
or ``CREWYARD_NATS_CREDS`` / ``CREWYARD_NATS_ISSUER``).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ._client import CliError
from ._options import id_argument, json_option, project_name
from .admin import _run, data_dir_option, nats_creds_option, nats_option, settings_here
from .render import done, listing_table, make_console, print_json

if TYPE_CHECKING:
    from crewyard.auth.consumers import Consumers
    from crewyard.settings import Settings

_UNITS = {"m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, option: str = "--expires") -> timedelta:
    """``30d``, ``12h``, ``90m`` (given to ``option``)."""
    unit = _UNITS.get(text[-1:].lower())
    digits = text[:-1]
    if unit is None or not (digits.isascii() and digits.isdigit()) or not digits.strip("0"):
        raise CliError(f"{option}: invalid duration {text[:40]!r}: use e.g. 90m, 12h or 30d")
    try:
        if len(digits.lstrip("0")) > 20:  # int() of a 5,000-digit string is refused with ValueError
            raise OverflowError
        return timedelta(seconds=int(digits) * unit)
    except OverflowError:
        raise CliError(f"{option}: invalid duration {text[:40]!r}: too long") from None


def expiry(text: str | None, option: str = "--expires") -> datetime | None:
    """The moment ``--expires DURATION`` from now ends, or None without one."""
    if not text:
        return None
    try:
        return datetime.now(UTC) + parse_duration(text, option)
    except OverflowError:
        raise CliError(f"{option}: invalid duration {text[:40]!r}: too long") from None


def _new_private_file(path: Path) -> int:
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise CliError(
            f"cannot write {path}: {exc.strerror or exc} (an existing file is never replaced)"
        ) from None


async def _with_consumers(settings: Settings, work: Any) -> Any:
    from crewyard import platform
    from crewyard.auth import load_issuer
    from crewyard.auth.consumers import Consumers

    issuer_file = settings.issuer_file
    if issuer_file is None:
        raise CliError("no issuer keys here: run this where a gateway runs (or set CREWYARD_NATS_ISSUER)")
    store = await platform.gateway_store(settings)
    try:
        consumers = Consumers(
            store, load_issuer(issuer_file), platform.nats_names(settings), settings.nats_url
        )
        return await work(consumers)
    finally:
        await store.nc.drain()


@click.group()
def consumers() -> None:
    """NATS credentials for outside systems that follow one project's events."""


@consumers.command("create")
@click.option(
    "--project", "-p", required=True, callback=project_name, help="The project whose events it may read."
)
@click.option("--name", required=True, help="A name for the consumer, e.g. analytics.")
@click.option("--expires", metavar="DURATION", help="Expire the credentials after e.g. 30d, 12h.")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="A new file to write the credentials to (JSON, readable by you only); shown nowhere else.",
)
@data_dir_option
@nats_option
@nats_creds_option
@json_option
def create(
    project: str,
    name: str,
    expires: str | None,
    output: Path,
    data_dir: Path | None,
    nats_url: str | None,
    nats_creds: str | None,
    as_json: bool,
) -> None:
    """Issue credentials that replay and follow one project's runs and deployments, read-only.

    \b
    Example:
      crewyard consumers create --project research --name analytics --output analytics.json
      python examples/outside-consumer/consume.py analytics.json --nats nats://HOST:4222
    """
    import msgspec

    settings = settings_here(data_dir, nats_url, nats_creds)
    until = expiry(expires)

    async def work(c: Consumers) -> Any:
        return await c.create(project, name, expires_at=until)

    # The file is made first (as `keys generate -o` does): credentials issued into a file that
    # cannot be written would be live with nobody holding them.
    fd = _new_private_file(output)
    try:
        issued = _run(lambda: _with_consumers(settings, work))
    except BaseException:
        os.close(fd)
        output.unlink(missing_ok=True)
        raise
    with os.fdopen(fd, "wb") as fh:
        fh.write(msgspec.json.format(msgspec.json.encode(issued)))
    # The credentials themselves go to the file only, never to the terminal or a pipe.
    record = {"consumer_id": issued.consumer_id, "project": project, "name": name, "output": str(output)}
    done(as_json, record, f"consumer {issued.consumer_id} ({project}/{name}) → {output}")


@consumers.command("list")
@data_dir_option
@nats_option
@nats_creds_option
@json_option
def list_(data_dir: Path | None, nats_url: str | None, nats_creds: str | None, as_json: bool) -> None:
    """Every consumer credential issued, revoked ones included."""
    settings = settings_here(data_dir, nats_url, nats_creds)

    async def work(c: Consumers) -> Any:
        return await c.all()

    found = _run(lambda: _with_consumers(settings, work))
    if as_json:
        print_json({"consumers": list(found.values())})
        return

    table = listing_table(*("ID", "PROJECT", "NAME", "CREATED", "EXPIRES", "REVOKED"))
    for state in found.values():
        table.add_row(
            state.consumer_id,
            state.project,
            state.name,
            f"{state.created_at:%Y-%m-%d %H:%M}",
            f"{state.expires_at:%Y-%m-%d %H:%M}" if state.expires_at else "never",
            f"{state.revoked_at:%Y-%m-%d %H:%M}" if state.revoked_at else "",
        )
    make_console().print(table)


@consumers.command("revoke")
@id_argument("consumer_id", "con")
@data_dir_option
@nats_option
@nats_creds_option
@json_option
def revoke(
    consumer_id: str, data_dir: Path | None, nats_url: str | None, nats_creds: str | None, as_json: bool
) -> None:
    """Revoke a consumer's credentials: it is disconnected at once, and its durable deleted."""
    from crewyard.auth.consumers import ConsumerError

    settings = settings_here(data_dir, nats_url, nats_creds)

    async def work(c: Consumers) -> Any:
        try:
            return await c.revoke(consumer_id)
        except ConsumerError as exc:
            raise CliError(str(exc)) from None

    _run(lambda: _with_consumers(settings, work))
    done(as_json, {"consumer_id": consumer_id, "revoked": True}, f"consumer {consumer_id} revoked")
