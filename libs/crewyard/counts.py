"""Counts per key (connections per address, event streams per API key, messages per project)
that keep no entry for a key with nothing left, so that they never grow with every key seen."""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")


def adjust(counts: dict[K, int], key: K, delta: int) -> int:
    """Add ``delta`` to ``key``'s count, dropping the key when it comes to zero; the new count."""
    left = counts.get(key, 0) + delta
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)
    return max(left, 0)
