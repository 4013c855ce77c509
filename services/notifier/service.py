"""The notifier service: outgoing webhooks, as two consumers of the event stream.

``dispatch`` turns run and deployment lifecycle events into queued deliveries (FastStream pull
subscribers); ``deliver`` sends them, one lane per webhook (the event store's work queue). Both
consume durables shared by every instance, so the notifier scales like the other services and
nothing is lost when it, or a receiver, is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from faststream.nats import NatsBroker

from crewyard.core.webhooks import RetryPolicy
from crewyard.eventstore import EventStore, close, credential_options
from crewyard.secrets import SecretBox
from crewyard.servicekit import unless_stopped
from crewyard.settings import Settings

from .deliver import Deliverer
from .dispatch import Dispatcher, subscribe
from .health import Health
from .sender import Sender, guard_for

log = logging.getLogger("crewyard.notifier")


class _QuietFetchTimeouts(logging.Filter):
    """Leaves out an idle pull that nats-py ended with a plain ``asyncio.TimeoutError`` (its
    request's time ran out before the second half; FastStream only expects nats' own
    ``TimeoutError``): FastStream's supervisor starts the consumer task again at once, so this
    is not the error with a traceback it would be logged as."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (type(exc) is TimeoutError and "raised an exception, retrying" in record.getMessage())


class Notifier:
    def __init__(self, settings: Settings, store: EventStore, secrets: SecretBox) -> None:
        self.settings, self.store = settings, store
        self.sender = Sender(guard_for(settings), settings.webhook_timeout_s)
        self.dispatcher = Dispatcher(store)
        self.deliverer = Deliverer(
            store,
            secrets,
            self.sender,
            Health(store, settings.webhook_disable_after),
            policy=RetryPolicy(
                base_s=settings.webhook_retry_base_s,
                cap_s=max(settings.webhook_retry_base_s, 3600.0),
                window_s=settings.webhook_retry_window_s,
            ),
            concurrency=settings.webhook_concurrency,
            ack_wait=settings.notifier_ack_wait_s,
        )

    def broker(self) -> NatsBroker:
        # FastStream logs every consumer task's end at INFO: for debugging, not for operators.
        faststream_log = logging.getLogger("crewyard.notifier.faststream")
        faststream_log.setLevel(logging.WARNING)
        if not any(isinstance(f, _QuietFetchTimeouts) for f in faststream_log.filters):
            faststream_log.addFilter(_QuietFetchTimeouts())
        credentials = credential_options(self.settings.creds_for("notifier"))
        broker = NatsBroker(
            [u.strip() for u in self.settings.nats_url.split(",") if u.strip()],
            name="crewyard-notifier-dispatch",
            max_reconnect_attempts=-1,
            reconnect_time_wait=1,
            logger=logging.getLogger("crewyard.notifier.faststream"),
            log_level=logging.DEBUG,  # a line per message is for debugging, not for operators
            **credentials,
        )
        subscribe(
            broker,
            self.dispatcher.handle_in_order,
            stream=self.store.stream,
            prefix=self.store.prefix,
            inbox_prefix=credentials.get("inbox_prefix"),
        )
        return broker

    async def run(self, stop: asyncio.Event) -> None:
        broker = self.broker()
        try:
            await self._start(broker, stop)
            delivering = asyncio.create_task(self.deliverer.run(stop))
            try:
                await asyncio.wait(
                    [delivering, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
                )
                if delivering.done():
                    delivering.result()  # an unexpected end: let the platform see it
            finally:
                stop.set()
                with contextlib.suppress(Exception):
                    await delivering
        finally:
            await self._stop(broker)
            await self.sender.close()

    @staticmethod
    async def _start(broker: NatsBroker, stop: asyncio.Event) -> None:
        """Start the dispatch subscribers; a broker slow to answer is waited for, not fatal, and
        a stop meanwhile ends the wait (the connect retries forever on its own)."""
        while not stop.is_set():
            try:
                await unless_stopped(broker.start(), stop)
                return
            except Exception as exc:
                log.warning("cannot start the dispatch subscribers yet (%s); retrying", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 2.0)

    @staticmethod
    async def _stop(broker: NatsBroker) -> None:
        """Stop the subscribers and close the connection — also when the broker is gone
        (FastStream drains it, which nats-py refuses while reconnecting: it would retry forever)."""
        connection = broker._connection  # FastStream's; no public handle on it
        with contextlib.suppress(Exception):
            await broker.stop()
        if connection is not None:
            await close(connection)
