"""An event as the stream holds it, before decoding."""

from __future__ import annotations

import msgspec

from crewyard.core import subjects
from crewyard.core.events import InvalidEvent, Recorded, decode


class RawEvent(msgspec.Struct, frozen=True):
    """An event as stored: its sequence, subject and JSON bytes (decode lazily)."""

    seq: int
    subject: str
    data: bytes

    def decode(self, prefix: str | None = None) -> Recorded:
        """The event, checked against its subject; :class:`InvalidEvent` when it is unusable.

        ``prefix`` is the stream's subject prefix; without it only the part of the subject after
        the prefix is compared."""
        event = decode(self.data)
        places = subjects.places_of(
            event.data.SCOPE, event.project, event.aggregate, event.aggregate_id, event.type
        )
        if prefix is not None:
            ok = any(self.subject == f"{prefix}.{place}" for place in places)
        else:
            ok = any(self.subject.endswith("." + place) for place in places)
        if not ok:
            raise InvalidEvent(f"subject {self.subject[:200]!r} does not match the event ({places[0]})")
        return Recorded(self.seq, event)
