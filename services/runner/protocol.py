"""The runtime → runner vocabulary, decoded: a closed tagged union (see crewyard_runtime._protocol)."""

from __future__ import annotations

from typing import Any

import msgspec


class LogLine(msgspec.Struct, tag="log", tag_field="t"):
    message: str
    level: str = "info"
    stream: str = "stdout"


class CrewEvent(msgspec.Struct, tag="event", tag_field="t"):
    type: str
    data: dict[str, Any] = msgspec.field(default_factory=dict)


class Result(msgspec.Struct, tag="result", tag_field="t"):
    output: Any = None


class CrewError(msgspec.Struct, tag="error", tag_field="t"):
    message: str
    error_type: str | None = None
    traceback: str | None = None


Message = LogLine | CrewEvent | Result | CrewError
_decoder = msgspec.json.Decoder(Message)


def decode_line(line: bytes) -> Message | None:
    """A protocol message, or None when the line is not one (then it is treated as output)."""
    try:
        message: Message = _decoder.decode(line)
        return message
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
