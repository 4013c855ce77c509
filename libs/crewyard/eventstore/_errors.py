"""The event store's own errors; callers never import nats to catch something."""

from crewyard.errors import CrewyardError


class EventStoreError(CrewyardError):
    """Root of the event store's errors."""


class ConcurrencyConflict(EventStoreError):
    """Another writer appended to the aggregate since it was loaded."""


class StoreUnavailable(EventStoreError):
    """The broker did not answer (down, restarting, or no stream)."""


class StreamMisconfigured(EventStoreError):
    """The stream exists with settings crewyard cannot work with."""
