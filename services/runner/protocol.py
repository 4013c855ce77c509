"""The runner's side of the runner ↔ runtime protocol, version 4 (and 3, an older image's runtime).

The definition both sides follow is ``crewyard_runtime/protocol.json`` (message types, fields,
which are required, the order of a run); the structs here are tested against it, as is the
Python runtime. Runtime → runner messages are decoded into a closed tagged union: a line that is
not one of them is treated as text. Runner → runtime messages are encoded with :func:`encode`.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import msgspec

VERSION = 4
#: The versions this runner speaks: a runtime of version 3 (in an image built before 4) runs as it
#: always did, without keepalives (so without its own watchdog: only the runner fences its runs).
SPOKEN = frozenset({3, 4})
#: The first version whose runtime takes ``keepalive``, and lingers after its last line when
#: ``prepare`` says ``linger`` (until its input ends): older ones have theirs left alone.
KEEPALIVE_SINCE = LINGER_SINCE = 4


# -- runtime → runner --


class Hello(msgspec.Struct, tag="hello", tag_field="t"):
    v: int
    runtime: str


class Ready(msgspec.Struct, tag="ready", tag_field="t"):
    pass


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


class Request(msgspec.Struct, tag="request", tag_field="t"):
    id: str
    op: str
    args: dict[str, Any] = msgspec.field(default_factory=dict)


Message = Hello | Ready | LogLine | CrewEvent | Result | CrewError | Request
_decoder = msgspec.json.Decoder(Message)


class Oversized(msgspec.Struct):
    """A protocol message longer than a line may be, of type ``t``: only a result may be (its
    output); any other is read no further than its type, and dropped."""

    t: str


class _Tag(msgspec.Struct):
    t: str | None = None  # (typed: a tag of megabytes of objects is refused, never built)


_tag_decoder = msgspec.json.Decoder(_Tag)
_result_decoder = msgspec.json.Decoder(Result)


def decode_line(line: bytes, most: int | None = None) -> Message | Oversized | None:
    """A protocol message, or None when the line is not one (then it is treated as output). A
    line longer than ``most`` is decoded whole only when it is a result: a request of megabytes
    of ``[{},{},…]`` became some 24 times its size in objects, only to be dropped."""
    try:
        if most is not None and len(line) > most:
            tag = _tag_decoder.decode(line).t  # (the other fields are skipped, never built)
            if tag != "result":
                return Oversized(t=tag) if tag in _TAGS else None
            # As a result only: a line whose first tag is another (a repeated "t") fails at it.
            result: Result = _result_decoder.decode(line)
            return result
        message: Message = _decoder.decode(line)
        return message
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None  # RecursionError: JSON nested past msgspec's depth (~1,000), a few KB of [[[…


_TAGS = frozenset(
    str(kind.__struct_config__.tag) for kind in (Hello, Ready, LogLine, CrewEvent, Result, CrewError, Request)
)


# -- runner → runtime --


class ReplyError(msgspec.Struct):
    code: str
    message: str


class Prepare(msgspec.Struct, tag="prepare", tag_field="t", omit_defaults=True):
    env: dict[str, str]
    entrypoint: str
    framework: str
    project: str | None = None
    deployment_id: str | None = None
    #: The runner ends the runtime's input once it has read its last line: the runtime waits for
    #: that before it exits (a container's: a write that meets its end is on its output).
    linger: bool = False


class ThreadStart(msgspec.Struct, omit_defaults=True):
    """A thread run: the thread, and what resumes an interrupted graph (its state comes by
    request: ``thread.get``)."""

    id: str
    command: dict[str, Any] | None = None


class Start(msgspec.Struct, tag="start", tag_field="t", omit_defaults=True):
    run_id: str
    input: dict[str, Any]
    thread: ThreadStart | None = None


class Reply(msgspec.Struct, tag="reply", tag_field="t", omit_defaults=True):
    id: str
    ok: bool
    value: Any = None
    error: ReplyError | None = None


class Keepalive(msgspec.Struct, tag="keepalive", tag_field="t", omit_defaults=True):
    """The runner still holds the run until ``deadline`` (its machine's CLOCK_MONOTONIC, in
    seconds; a runtime on the machine with the same ``boot`` id takes it as it is), that is
    ``within`` seconds from when it was sent (for a runtime on another machine). Past it, the
    runtime's watchdog ends the crew (``keepalive.py``)."""

    within: float
    deadline: float | None = None
    boot: str | None = None


Outgoing = Prepare | Start | Reply | Keepalive
_encoder = msgspec.json.Encoder()


def encode(message: Outgoing) -> bytes:
    """One line for the runtime's stdin (with its newline)."""
    return _encoder.encode(message) + b"\n"


def refuse(request: Request, code: str, message: str) -> Reply:
    return Reply(id=request.id, ok=False, error=ReplyError(code=code, message=message))


def definition() -> dict[str, Any]:
    """The protocol document (``crewyard_runtime/protocol.json``)."""
    text = resources.files("crewyard_runtime").joinpath("protocol.json").read_text(encoding="utf-8")
    doc: dict[str, Any] = json.loads(text)
    return doc
