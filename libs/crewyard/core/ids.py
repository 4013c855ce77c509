"""Sortable, prefixed identifiers (ULID layout: 48-bit milliseconds + 80 random bits).

The clock and the randomness are arguments so that the pure core stays deterministic in tests.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
PREFIXES = (
    "run",
    "dep",
    "ver",
    "evt",
    "key",
    "whk",
    "dlg",
    "dlv",
    "trg",
    "sch",
    "thr",
    "ckp",
    "tbl",
    "row",
    "con",
)
_ID_RE = re.compile(rf"({'|'.join(PREFIXES)})_[0-9a-hjkmnp-tv-z]{{26}}")


def new_id(
    prefix: str,
    *,
    now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    rand: Callable[[int], bytes] = os.urandom,
) -> str:
    """Return ``<prefix>_<26 base32 chars>``, ordered by creation time."""
    if prefix not in PREFIXES:
        raise ValueError(f"unknown id prefix {prefix!r}")
    value = (now_ms() & ((1 << 48) - 1)) << 80 | int.from_bytes(rand(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"


def is_id(value: str, prefix: str | None = None) -> bool:
    """True when ``value`` is a well-formed id (of ``prefix``, when given)."""
    if not _ID_RE.fullmatch(value):
        return False
    return prefix is None or value.startswith(prefix + "_")


def derived_id(prefix: str, time_ms: int, *parts: str) -> str:
    """An id that is the same every time it is made from the same ``parts`` (a delivery of one
    event to one webhook, the group of one run's deliveries…), still ordered by ``time_ms``."""
    digest = hashlib.sha256("\0".join(parts).encode()).digest()
    return new_id(prefix, now_ms=lambda: time_ms, rand=lambda n: digest[:n])


def version_id(deployment_id: str) -> str:
    """The ``ver_…`` spelling of a version's ``dep_…`` id (the same version)."""
    return "ver_" + deployment_id.removeprefix("dep_") if deployment_id.startswith("dep_") else deployment_id


def deployment_id(value: str) -> str:
    """A version id as stored (``dep_…``), given either spelling; anything else unchanged."""
    return "dep_" + value.removeprefix("ver_") if value.startswith("ver_") else value
