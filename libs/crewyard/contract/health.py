"""Health answers: ``/healthz`` (the process is alive) and ``/readyz`` (it can serve)."""

from __future__ import annotations

from typing import Literal

import msgspec

from .errors import ErrorDetail


class Alive(msgspec.Struct, kw_only=True):
    status: Literal["ok"] = "ok"
    service: str
    version: str


class Ready(msgspec.Struct, kw_only=True, omit_defaults=True):
    """200 with ``status: ready`` and each check's state, or 503 with ``status: not ready``, the
    ``reasons`` and the API's error body (code ``not_ready``)."""

    status: Literal["ready", "not ready"]
    service: str
    #: Check → ``ok`` or what is wrong (``jetstream``, ``stream``, ``read_model`` …).
    checks: dict[str, str]
    reasons: list[str] | None = None
    error: ErrorDetail | None = None
