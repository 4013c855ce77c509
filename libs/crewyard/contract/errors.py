"""The one error body every failing request answers with."""

from __future__ import annotations

import msgspec


class ErrorDetail(msgspec.Struct, kw_only=True):
    #: A stable machine-readable code (``bad_request``, ``not_found``, ``conflict`` …).
    code: str
    #: A sentence for people; it names the field or limit at fault.
    message: str


class ErrorBody(msgspec.Struct, kw_only=True):
    """``{"error": {"code", "message"}}`` with a 4xx or 5xx status."""

    error: ErrorDetail
