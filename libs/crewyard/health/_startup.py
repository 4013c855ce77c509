"""Waiting for JetStream at start-up, instead of exiting: a service started before its NATS
cluster (or before the cluster has elected a leader for the stream) connects, declares or checks
the stream, and says what it is waiting for while it waits — in the log, and as the reason its
``/readyz`` gives. Only a stream that exists with settings crewyard cannot use is fatal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from crewyard.eventstore import (
    EventStore,
    StoreUnavailable,
    abandon,
    close,
    connect,
    ensure_platform_stream,
    ensure_stream,
)
from crewyard.settings import Settings

from ._readiness import Readiness

log = logging.getLogger("crewyard.startup")
LOG_EVERY_S = 10.0


class _Waiting:
    """Says what start-up waits for: at once, then every ``LOG_EVERY_S`` while it lasts."""

    def __init__(self, service: str, readiness: Readiness | None) -> None:
        self.service, self.readiness = service, readiness
        self.started = time.monotonic()
        self.logged_at: float | None = None

    def note(self, reason: str) -> None:
        if self.readiness is not None:
            self.readiness.waiting(reason)

    def __call__(self, reason: str) -> None:
        self.note(reason)
        now = time.monotonic()
        if self.logged_at is None or now - self.logged_at >= LOG_EVERY_S:
            self.logged_at = now
            log.warning("%s: waiting for %s (%.0f s so far)", self.service, reason, now - self.started)

    def done(self) -> None:
        if self.logged_at is not None:
            log.warning("%s: JetStream is ready after %.1f s", self.service, time.monotonic() - self.started)


async def wait_for_jetstream(
    settings: Settings,
    service: str,
    stop: asyncio.Event,
    readiness: Readiness | None = None,
    *,
    user: str | None = None,
) -> EventStore | None:
    """A store on a connected NATS with the stream in place; None if ``stop`` came first.
    ``readiness`` shows what it waits for meanwhile; attaching the store is the caller's move
    (once the service can really serve). It connects as NATS user ``user`` (default: the
    service's own); the gateway (and admin) also make sure of the platform stream."""
    user = user or service
    if stop.is_set():
        return None
    waiting = _Waiting(service, readiness)
    waiting.note(f"NATS at {settings.nats_url}")
    connecting = asyncio.create_task(
        connect(
            settings.nats_url,
            name=f"crewyard-{service}",
            creds=settings.creds_for(user),
            on_retry=lambda exc: waiting(f"NATS at {settings.nats_url} ({exc or type(exc).__name__})"),
        )
    )
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({connecting, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if not connecting.done():
        with contextlib.suppress(Exception):
            await abandon(connecting)
        return None
    nc = connecting.result()  # a bad URL raises here: that is misconfiguration, not a wait
    store = EventStore(
        nc, settings.stream, read_timeout=settings.store_timeout_s, request_timeout=settings.store_timeout_s
    )
    delay = 0.25
    while not stop.is_set():
        try:
            await ensure_stream(store.js, settings.stream)
            if user in ("gateway", "admin"):
                await ensure_platform_stream(store.js, settings.stream)
        except StoreUnavailable as exc:
            waiting(f"JetStream stream {settings.stream.name} ({exc})")
        else:
            waiting.done()
            return store
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, 5.0)
    await close(nc)
    return None
