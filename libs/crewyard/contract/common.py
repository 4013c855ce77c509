"""Bodies several routes share."""

from __future__ import annotations

from typing import Literal

import msgspec

#: Where a binary body or answer is documented (a crew upload, an artifact download).
GZIP: Literal["application/gzip"] = "application/gzip"
OCTET_STREAM: Literal["application/octet-stream"] = "application/octet-stream"


class Deleted(msgspec.Struct, kw_only=True):
    """What a ``DELETE`` answers with."""

    id: str
    deleted: bool = True


class NoFields(msgspec.Struct, kw_only=True):
    """An action that needs nothing more than its path (cancel, pause, rotate …): no body, or an
    empty JSON object. Other fields are ignored, so clients that send something still work."""
