"""The runtime → runner line protocol: one JSON object per line on the runtime's stdout.

Messages (field ``t`` is the tag): ``log`` {level, message, stream}, ``event`` {type, data},
``result`` {output}, ``error`` {error_type, message, traceback}. The crew's ``print`` output
arrives as ``log`` messages; raw writes to file descriptor 1 go to stderr (the runtime moves fd 1
onto 2 before the crew is imported), so only the runtime writes protocol lines.
"""

from __future__ import annotations

import io
import json
import os
import sys
import threading
from typing import Any, TextIO

_lock = threading.Lock()
_channel: TextIO | None = None


class _LogWriter(io.TextIOBase):
    """``sys.stdout`` of the crew: each printed line becomes a ``log`` message (level info)."""

    def __init__(self, stream: str) -> None:
        self._stream = stream
        self._buf = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._buf += text
        *lines, self._buf = self._buf.split("\n")
        for line in lines:
            send({"t": "log", "level": "info", "message": line, "stream": self._stream})
        return len(text)

    def flush(self) -> None:
        if self._buf:
            line, self._buf = self._buf, ""
            send({"t": "log", "level": "info", "message": line, "stream": self._stream})

    def isatty(self) -> bool:
        return False


def open_channel() -> None:
    """Keep the real stdout for the protocol; the crew's prints become log messages, and raw
    writes to file descriptor 1 (subprocesses, C code) go to stderr, which the runner reads too."""
    global _channel
    proto_fd = os.dup(1)
    os.dup2(2, 1)
    _channel = os.fdopen(proto_fd, "w", buffering=1, encoding="utf-8", errors="replace")
    sys.stdout = _LogWriter("stdout")


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
