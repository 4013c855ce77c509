"""HTTP byte ranges for artifact downloads (RFC 9110 §14): one range per request.

``bytes=a-b``, ``bytes=a-`` and ``bytes=-n`` are served (206); a range that starts past the end
is 416; anything else — several ranges, another unit, nonsense — is ignored and the whole file
is sent (200), as the RFC allows.
"""

from __future__ import annotations

import re

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_FAR = 10**18  # past the end of any file


def _position(digits: str) -> int:
    """A byte position as the header wrote it, any number of digits: one beyond every file is
    ``_FAR`` (``int()`` refuses over 4,300 digits, and such a number says no more than that)."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 18 else _FAR


class Unsatisfiable(Exception):
    """The range starts at or past the end of the file (answer 416)."""


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` (end exclusive) of the one range asked for, or None for the whole file."""
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last n bytes
        n = _position(last)
        if n == 0:
            raise Unsatisfiable
        if size == 0:
            return None  # all of nothing: no Content-Range can say so, the empty file is sent
        return max(size - n, 0), size
    start = _position(first)
    if last and _position(last) < start:
        return None  # invalid: ignored
    if start >= size:
        raise Unsatisfiable
    end = min(_position(last) + 1, size) if last else size
    return start, end


def etag_matches(header: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` / ``If-Range`` value names this entity (weak match)."""
    if not header:
        return False
    candidates = [c.strip().removeprefix("W/") for c in header.split(",")]
    return "*" in candidates or etag in candidates
