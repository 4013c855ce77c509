"""The runtime → runner line protocol: one JSON object per line on the runtime's stdout.

Messages (field ``t`` is the tag): ``log`` {level, message, stream}, ``event`` {type, data},
``result`` {output}, ``error`` {error_type, message, traceback}. Everything the crew itself
prints goes to stderr (the runtime moves file descriptor 1 onto 2 before the crew is imported),
so only the runtime writes protocol lines.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any, TextIO

_lock = threading.Lock()
_channel: TextIO | None = None


def open_channel() -> None:
    """Keep the real stdout for the protocol and send fd 1 to stderr from now on."""
    global _channel
    proto_fd = os.dup(1)
    os.dup2(2, 1)
    _channel = os.fdopen(proto_fd, "w", buffering=1, encoding="utf-8", errors="replace")


def active() -> bool:
    return _channel is not None


def _default(value: Any) -> Any:
    for attr in ("model_dump", "to_dict", "dict"):
        fn = getattr(value, attr, None)
        if callable(fn):
            try:
                return fn()
            except Exception:
                pass
    return str(value)


def send(message: dict[str, Any]) -> None:
    line = json.dumps(message, default=_default, ensure_ascii=False)
    with _lock:
        if _channel is None:
            return
        _channel.write(line + "\n")
        _channel.flush()
