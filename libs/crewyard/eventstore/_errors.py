"""The event store's own errors; callers never import nats to catch something."""

from crewyard.errors import CrewyardError


class EventStoreError(CrewyardError):
    """Root of the event store's errors."""


class ConcurrencyConflict(EventStoreError):
    """Another writer appended to the aggregate since it was loaded."""


class StoreUnavailable(EventStoreError):
    """The broker did not answer (down, restarting, or no stream).

    Raised by an append, ``maybe_stored`` says whether the event may be stored all the same (a
    publish whose answer never came may land later); False only when no attempt reached a stream
    or the stream refused every one."""

    def __init__(self, message: str, *, maybe_stored: bool = True) -> None:
        super().__init__(message)
        self.maybe_stored = maybe_stored


class StreamMisconfigured(EventStoreError):
    """The stream exists with settings crewyard cannot work with."""
