"""Connecting to NATS and declaring the stream, validated once at start-up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import nats
from nats.aio.client import Client, RawCredentials
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from crewyard.auth import CredentialsError, inbox_prefix_of, parse_creds
from crewyard.core.subjects import PLATFORM_PREFIX, PREFIX

from ._errors import StoreUnavailable, StreamMisconfigured

log = logging.getLogger(__name__)


class StreamSettings(msgspec.Struct, frozen=True, kw_only=True):
    name: str = "CREWYARD_EVENTS"
    prefix: str = PREFIX
    replicas: int = 1
    max_bytes: int = -1
    duplicate_window_s: float = 300.0
    object_bucket: str = "CREWYARD_OBJECTS"
    #: API keys and outside consumers: a stream of its own that only the gateway can use.
    platform_name: str = "CREWYARD_PLATFORM"
    platform_prefix: str = PLATFORM_PREFIX
    #: Key-value bucket the readiness probes write their heartbeats to.
    health_bucket: str = "CREWYARD_HEALTH"


def read_creds(creds: str | Path) -> str:
    """A ``.creds`` text from a file path, or the text itself (from a secret in the environment)."""
    text = str(creds)
    if "BEGIN NATS USER JWT" not in text:
        try:
            text = Path(creds).expanduser().read_text()
        except OSError as exc:
            raise StoreUnavailable(f"cannot read NATS credentials {creds}: {exc.strerror or exc}") from None
    try:
        parse_creds(text)
    except CredentialsError as exc:
        where = "" if "BEGIN" in str(creds) else f" {creds}"
        raise StoreUnavailable(f"NATS credentials{where}: {exc}") from None
    return text


def credential_options(creds: str | Path | None) -> dict[str, Any]:
    """``nats.connect`` keyword arguments for ``creds`` (also for clients built on nats-py, such
    as FastStream's broker): the user's credentials and the inbox prefix they may receive on."""
    if creds is None:
        return {}
    text = read_creds(creds)
    options: dict[str, Any] = {"user_credentials": RawCredentials(text)}
    prefix = inbox_prefix_of(text)
    if prefix:
        options["inbox_prefix"] = prefix
    return options


async def connect(
    url: str,
    *,
    name: str,
    creds: str | Path | None = None,
    connect_timeout: float = 5.0,
    on_retry: Callable[[Exception], None] | None = None,
) -> Client:
    """A connection that reconnects forever (services must outlive broker restarts).

    ``creds`` (a ``.creds`` file or its text) identifies the user; replies then arrive on the
    inbox prefix its permissions name, so no other user can receive them. The first connection
    is tried until it succeeds, too; ``on_retry`` hears of every failed attempt meanwhile."""
    options = credential_options(creds)

    refused: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def _on_error(exc: Exception) -> None:
        if on_retry is not None and not connecting.done():
            on_retry(exc)
        # A slow consumer means dropped messages, a permissions violation a refused request:
        # never quiet about either.
        text = str(exc).lower()
        level = (
            logging.WARNING if "slow consumer" in text or "permissions violation" in text else logging.DEBUG
        )
        if "authorization" in text or "authentication" in text:
            level = logging.ERROR
            if not refused.done():
                refused.set_result(str(exc))
        log.log(level, "nats: %s", exc)

    # A server that is not up yet is waited for (services may start first); credentials it
    # refuses are not: that fails start-up with a clear message instead of retrying forever.
    connecting = asyncio.ensure_future(
        nats.connect(
            [u.strip() for u in url.split(",") if u.strip()],  # a cluster: several seed URLs
            name=name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            connect_timeout=connect_timeout,
            allow_reconnect=True,
            error_cb=_on_error,
            **options,
        )
    )
    waiting: set[asyncio.Future[Any]] = {connecting, refused}
    try:
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # cancelled (a service stopped while it waited): so is the connecting
        await abandon(connecting)
        raise
    if not connecting.done():
        await abandon(connecting)
        hint = "no credentials given" if creds is None else "credentials refused"
        raise StoreUnavailable(f"cannot connect to NATS at {url}: {refused.result()} ({hint})")
    try:
        return connecting.result()
    except Exception as exc:
        raise StoreUnavailable(f"cannot connect to NATS at {url}: {exc}") from exc


async def cancel_until_done(task: asyncio.Future[Any], *, every: float = 0.2, limit: float = 30.0) -> None:
    """Cancel ``task`` and wait until it has ended, cancelling again if a cancel was lost.

    One cancel is not always enough for nats-py's connect loops: on Python 3.11,
    ``asyncio.wait_for`` returns its inner result when the cancel and the inner's completion
    arrive together — a refused connection, which the client's retry loop catches and retries
    every ``reconnect_time_wait``, forever. A cancel of our own while waiting is kept for the end."""
    cancelled = False
    deadline = asyncio.get_running_loop().time() + limit
    while not task.done():
        if asyncio.get_running_loop().time() > deadline:
            log.warning("%r did not end %.0f s after it was cancelled", task, limit)
            break
        task.cancel()
        try:
            await asyncio.wait({task}, timeout=every)
        except asyncio.CancelledError:
            cancelled = True
    if task.done() and not task.cancelled():
        task.exception()  # seen: not reported as never retrieved
    if cancelled:
        raise asyncio.CancelledError


async def abandon(connecting: asyncio.Future[Client]) -> None:
    """Give up a connect that is still going on: cancel it until it has ended, and close the
    connection if it was made just as the cancel came."""
    await cancel_until_done(connecting)
    if connecting.done() and not connecting.cancelled() and connecting.exception() is None:
        await close(connecting.result())


async def close(nc: Client, *, flush_timeout: float = 5.0) -> None:
    """Send what the connection still holds (a lost broker: no answer, just close), close it, and
    make sure its reconnecting has ended: nats-py cancels that task once and waits
    ``reconnect_time_wait`` for it, and a lost cancel (see :func:`cancel_until_done`) would leave
    it retrying for the rest of the process.

    Not ``nc.drain()``: that refuses a connection that is reconnecting (so the connection stays
    open, retrying), and waits for every subscription's queue to be taken, which a pull
    consumer's never is (what a pull consumer was handed and did not ack, the broker hands out
    again)."""
    try:
        if nc.is_connected:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.flush(), flush_timeout)
        else:
            # What a reconnecting client holds for the next server will never be sent now, and
            # nats-py's close writes it to the lost connection's transport first: that raises
            # (connection reset), and the close ends there, its subscriptions' tasks left running.
            nc._pending, nc._pending_data_size = [], 0
        with contextlib.suppress(Exception):
            await nc.close()
    finally:
        reconnecting = nc._reconnection_task  # nats-py's; no public handle on it
        if reconnecting is not None and not reconnecting.done():
            await cancel_until_done(reconnecting)


def _config(settings: StreamSettings) -> StreamConfig:
    return StreamConfig(
        name=settings.name,
        subjects=[f"{settings.prefix}.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        num_replicas=settings.replicas,
        max_msgs_per_subject=-1,
        max_bytes=settings.max_bytes,
        discard=DiscardPolicy.NEW,  # a full store refuses writes instead of deleting history
        duplicate_window=settings.duplicate_window_s,
        allow_direct=True,
        # One consumer per SSE client: the server's implicit cap (1,000) would refuse the next one.
        max_consumers=100_000,
        deny_delete=True,
        deny_purge=True,
    )


def _platform_config(settings: StreamSettings) -> StreamConfig:
    return StreamConfig(
        name=settings.platform_name,
        subjects=[f"{settings.platform_prefix}.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        num_replicas=settings.replicas,
        max_msgs_per_subject=-1,
        discard=DiscardPolicy.NEW,
        duplicate_window=settings.duplicate_window_s,
        allow_direct=True,
        deny_delete=True,
        deny_purge=True,
    )


async def ensure_platform_stream(js: JetStreamContext, settings: StreamSettings) -> None:
    """Create the platform stream (API keys, consumers) unless it exists."""
    try:
        await js.stream_info(settings.platform_name)
    except NotFoundError:
        await js.add_stream(_platform_config(settings))
    except Exception as exc:
        raise StoreUnavailable(f"cannot reach JetStream: {exc}") from exc


async def ensure_stream(js: JetStreamContext, settings: StreamSettings) -> None:
    """Create the event stream, or check that the existing one keeps history and takes our subjects."""
    wanted = _config(settings)
    try:
        info = await js.stream_info(settings.name)
    except NotFoundError:
        try:
            await js.add_stream(wanted)
        except Exception as exc:  # e.g. a cluster still electing a leader, or too few servers
            raise StoreUnavailable(f"cannot create stream {settings.name}: {exc!r}") from exc
        return
    except Exception as exc:
        raise StoreUnavailable(f"cannot reach JetStream: {exc!r}") from exc
    cfg = info.config
    problems = []
    if cfg.retention not in (None, RetentionPolicy.LIMITS):
        problems.append(f"retention is {cfg.retention}, must be limits (history is the source of truth)")
    if f"{settings.prefix}.>" not in (cfg.subjects or []):
        problems.append(f"subjects {cfg.subjects} do not include {settings.prefix}.>")
    if cfg.discard == DiscardPolicy.OLD and (cfg.max_bytes or -1) > 0:
        problems.append("discard=old with max_bytes would silently delete events")
    if problems:
        raise StreamMisconfigured(f"stream {settings.name}: " + "; ".join(problems))
    if (
        not cfg.allow_direct
        or (cfg.duplicate_window or 0) < settings.duplicate_window_s
        or (cfg.max_consumers or 0) not in (-1, wanted.max_consumers)
    ):
        try:
            await js.update_stream(wanted)
        except Exception as exc:  # services may create the stream but not change it
            raise StreamMisconfigured(
                f"stream {settings.name} needs its settings updated, which this NATS user may not do; "
                "start the platform once with the admin credentials (crewyard up does)"
            ) from exc
