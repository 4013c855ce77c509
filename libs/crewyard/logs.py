"""The platform's logs: text for people, or one JSON object per line for log pipelines.

``CREWYARD_LOG_FORMAT=json`` (``--json`` on ``up`` / ``service`` / ``demo``) writes each record as
``{"time", "level", "logger", "message", …}`` with the ids of what it is about — ``run_id``,
``deployment_id``, ``project`` — taken from :func:`bind`, which a service calls once per piece of
work (a context variable: every asyncio task carries its own). ``CREWYARD_LOG_LEVEL`` (or
``--log-level``) sets the level.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["FORMATS", "LEVELS", "JsonFormatter", "bind", "configure"]

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
#: (name, value) pairs: immutable, so a task never changes another task's context.
_context: contextvars.ContextVar[tuple[tuple[str, str], ...]] = contextvars.ContextVar(
    "crewyard_log_context", default=()
)
_TEXT = "%(asctime)s %(name)s %(levelname)s %(message)s"


@contextlib.contextmanager
def bind(**fields: str | None) -> Iterator[None]:
    """Add ``fields`` (e.g. ``run_id=…``) to every record logged inside the block (this task only)."""
    merged = {**dict(_context.get()), **{k: v for k, v in fields.items() if v}}
    token = _context.set(tuple(merged.items()))
    try:
        yield
    finally:
        _context.reset(token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **dict(_context.get()),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class _TextWithContext(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        context = _context.get()
        if context:
            text += " [" + " ".join(f"{k}={v}" for k, v in context) + "]"
        return text


def configure(level: str, fmt: str = "text") -> None:
    """Set up the root logger once for a platform process (replacing earlier handlers)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else _TextWithContext(_TEXT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Libraries' chatter (one line per HTTP request) stays out unless asked for.
    for noisy in ("httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
