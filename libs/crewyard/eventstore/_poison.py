"""Events set aside: stored bytes a reader could not use (undecodable, unknown type or version,
outside the bounds, on a subject that contradicts the envelope).

Anyone who may publish into the stream can write anything, and a newer crewyard may write a
version this one does not read: a reader that stopped at such an event would stop for good
(every restart meets it again). So every reader sets it aside — a log line and a counter per
reader — and goes on with the next one.
"""

from __future__ import annotations

import logging
from collections import Counter

log = logging.getLogger("crewyard.eventstore")

_counts: Counter[str] = Counter()
#: Log every event set aside up to this many per reader, then one in ``_LOG_EVERY`` (a flood of
#: garbage must not become a flood of log lines).
_LOG_FIRST = 100
_LOG_EVERY = 1000


def set_aside(reader: str, seq: int, subject: str, reason: object) -> None:
    """Count and log one event that ``reader`` skips."""
    _counts[reader] += 1
    n = _counts[reader]
    if n <= _LOG_FIRST or n % _LOG_EVERY == 0:
        log.warning(
            "%s set aside event %d on %s (%d so far): %s", reader, seq, subject[:200], n, str(reason)[:300]
        )


def set_aside_counts() -> dict[str, int]:
    """Events set aside so far in this process, per reader (projector, runner, sse …)."""
    return dict(_counts)
