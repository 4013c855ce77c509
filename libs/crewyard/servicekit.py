"""What the platform hands a service when it starts one, and what the service gives back.

Each service package has one factory, ``create_service(context) -> Service``, which builds the
service from its connections (made by the platform: the event store once JetStream answers, the
object store, the readiness of a service started alone). ``crewyard up`` and ``crewyard service
NAME`` look the factory up in one table (``crewyard.platform``), run ``service.run(stop)`` and,
when it returns, flush and close the service's NATS connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from crewyard.eventstore import EventStore, StoreUnavailable, WorkQueue, cancel_until_done
from crewyard.health import Readiness
from crewyard.objects import ObjectStore
from crewyard.secrets import SecretBox, load_key
from crewyard.settings import Settings

__all__ = ["Service", "ServiceContext", "ServiceFactory", "bind_when_able", "unless_stopped"]

T = TypeVar("T")
log = logging.getLogger("crewyard")
#: The longest pause between two tries of :func:`bind_when_able`.
BIND_MOST_S = 5.0


@dataclass(frozen=True)
class ServiceContext:
    settings: Settings
    store: EventStore
    objects: ObjectStore
    #: The health of a service started alone (None inside ``crewyard up``, except the gateway's).
    readiness: Readiness | None = None
    #: The gateway's port, already listening (its stand-in answered there until now).
    listener: socket.socket | None = None

    def secrets(self) -> SecretBox:
        """The box for environment values and signing secrets (the key from the data dir or env)."""
        return SecretBox(load_key(self.settings.data_dir, self.settings.secret_key_b64))


class Service(Protocol):
    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set, then finish what is in flight and return."""
        ...


ServiceFactory = Callable[[ServiceContext], Awaitable[Service]]


async def unless_stopped(work: Awaitable[T], stop: asyncio.Event) -> T | None:
    """``work``'s result, or None when ``stop`` is set first: the work is then cancelled, as a
    crash would end it. For waits a stop should not sit through — a read of a broker that went
    away takes its whole request timeout to fail — and only for work a crash may interrupt."""
    task: asyncio.Future[T] = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((task, stopping), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        interrupted = not task.done()
        if interrupted:
            await cancel_until_done(task)
    if interrupted:
        return None
    return task.result()


async def bind_when_able(queue: WorkQueue, stop: asyncio.Event) -> bool:
    """Bind ``queue``'s durable consumer, trying again (every 0.5 s, then up to
    :data:`BIND_MOST_S`) while the broker cannot make it — JetStream without a quorum, a broker
    restarting — so that a service started meanwhile waits for it, as one already running does,
    rather than exiting. True once bound; False when ``stop`` came first."""
    pause, said = 0.5, False
    while not stop.is_set():
        try:
            await unless_stopped(queue.start(), stop)
        except StoreUnavailable as exc:
            if not said:
                log.warning("waiting for the broker to make the work queue %s: %s", queue.durable, exc)
                said = True
        else:
            if stop.is_set():  # (its start may have been cancelled)
                return False
            if said:
                log.warning("the work queue %s is bound", queue.durable)
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), pause)
        pause = min(BIND_MOST_S, pause * 2)
    return False
