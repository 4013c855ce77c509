"""Base class of every event payload."""

from __future__ import annotations

from typing import ClassVar

import msgspec


class Payload(msgspec.Struct, frozen=True, kw_only=True):
    """A typed event payload. ``TYPE`` is the stable wire tag, ``AGGREGATE`` its aggregate kind,
    ``VERSION`` the schema version written today."""

    TYPE: ClassVar[str]
    AGGREGATE: ClassVar[str]
    VERSION: ClassVar[int] = 1
