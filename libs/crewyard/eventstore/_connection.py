"""Connecting to NATS and declaring the stream, validated once at start-up."""

from __future__ import annotations

import logging

import msgspec
import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from crewyard.core.subjects import PREFIX

from ._errors import StoreUnavailable, StreamMisconfigured

log = logging.getLogger(__name__)


class StreamSettings(msgspec.Struct, frozen=True, kw_only=True):
    name: str = "CREWYARD_EVENTS"
    prefix: str = PREFIX
    replicas: int = 1
    max_bytes: int = -1
    duplicate_window_s: float = 300.0
    object_bucket: str = "CREWYARD_OBJECTS"


async def connect(url: str, *, name: str, connect_timeout: float = 5.0) -> Client:
    """A connection that reconnects forever (services must outlive broker restarts)."""

    async def _on_error(exc: Exception) -> None:
        # A slow consumer means dropped messages: never quiet about that.
        level = logging.WARNING if "slow consumer" in str(exc).lower() else logging.DEBUG
        log.log(level, "nats: %s", exc)

    try:
        return await nats.connect(
            [u.strip() for u in url.split(",") if u.strip()],  # a cluster: several seed URLs
            name=name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            connect_timeout=connect_timeout,
            allow_reconnect=True,
            error_cb=_on_error,
        )
    except Exception as exc:
        raise StoreUnavailable(f"cannot connect to NATS at {url}: {exc}") from exc


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


async def ensure_stream(js: JetStreamContext, settings: StreamSettings) -> None:
    """Create the event stream, or check that the existing one keeps history and takes our subjects."""
    wanted = _config(settings)
    try:
        info = await js.stream_info(settings.name)
    except NotFoundError:
        await js.add_stream(wanted)
        return
    except Exception as exc:
        raise StoreUnavailable(f"cannot reach JetStream: {exc}") from exc
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
        await js.update_stream(wanted)
