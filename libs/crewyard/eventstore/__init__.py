"""The event store on NATS JetStream: the only module that talks to the broker for events.

Public contract: :class:`EventStore` (append with de-duplication and optimistic concurrency,
load an aggregate, follow a subject from a sequence), :class:`WorkQueue` (durable pull consumer
shared by service instances), :func:`connect`, :func:`ensure_stream` and the error hierarchy.
"""

from ._connection import StreamSettings, connect, ensure_stream
from ._errors import ConcurrencyConflict, EventStoreError, StoreUnavailable, StreamMisconfigured
from ._store import EventStore, RawEvent
from ._work import WorkItem, WorkQueue

__all__ = [
    "ConcurrencyConflict",
    "EventStore",
    "EventStoreError",
    "RawEvent",
    "StoreUnavailable",
    "StreamMisconfigured",
    "StreamSettings",
    "WorkItem",
    "WorkQueue",
    "connect",
    "ensure_stream",
]
