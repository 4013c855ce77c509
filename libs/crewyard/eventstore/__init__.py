"""The event store on NATS JetStream: the only module that talks to the broker for events.

Public contract: :class:`EventStore` (append with de-duplication and optimistic concurrency,
load an aggregate, follow a subject from a sequence), :class:`WorkQueue` (durable pull consumer
shared by service instances), :class:`Probe` (the questions a readiness check asks), :func:`connect`,
:func:`close`, :func:`ensure_stream`, the error hierarchy, and :func:`set_aside` with its counters
for events a reader cannot use.
"""

from ._connection import (
    StreamSettings,
    abandon,
    cancel_until_done,
    close,
    connect,
    credential_options,
    ensure_platform_stream,
    ensure_stream,
    read_creds,
)
from ._errors import ConcurrencyConflict, EventStoreError, StoreUnavailable, StreamMisconfigured
from ._poison import set_aside, set_aside_counts
from ._probe import Probe
from ._raw import RawEvent
from ._store import Appended, EventStore
from ._work import WorkItem, WorkQueue

__all__ = [
    "Appended",
    "ConcurrencyConflict",
    "EventStore",
    "EventStoreError",
    "Probe",
    "RawEvent",
    "StoreUnavailable",
    "StreamMisconfigured",
    "StreamSettings",
    "WorkItem",
    "WorkQueue",
    "abandon",
    "cancel_until_done",
    "close",
    "connect",
    "credential_options",
    "ensure_platform_stream",
    "ensure_stream",
    "read_creds",
    "set_aside",
    "set_aside_counts",
]
