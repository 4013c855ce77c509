"""Numbers and values as people read them, the same in the CLI and the console."""

from __future__ import annotations

import json
from typing import Any


def duration(ms: float) -> str:
    """``ms`` milliseconds as ``4.2s``, ``3m 7s`` or ``2h 5m``."""
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m"


def size(count: float) -> str:
    """A number of bytes as ``512 B``, ``1.5 KB``, ``3.2 MB`` or ``1.0 GB``."""
    value = float(count)
    for unit in ("B", "KB", "MB"):
        if value < 1024:
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def one_line(value: Any, limit: int) -> str:
    """A value (text, or anything as JSON) on one line, cut at ``limit`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
