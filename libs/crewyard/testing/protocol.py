"""Checking messages against the runner ↔ runtime protocol document (``crewyard_runtime/protocol.json``).

Any runtime (the Python one, a Node shim) and the runner's encoder are tested with
:func:`problems`: every message they produce must be one the document defines, with its required
fields, no unknown ones, and values of the declared types.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

RUNTIME_TO_RUNNER = "runtime_to_runner"
RUNNER_TO_RUNTIME = "runner_to_runtime"


def document() -> dict[str, Any]:
    text = resources.files("crewyard_runtime").joinpath("protocol.json").read_text(encoding="utf-8")
    doc: dict[str, Any] = json.loads(text)
    return doc


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "any":
        return True
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "string_map":
        return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    if kind == "error_object":
        return (
            isinstance(value, dict)
            and set(value) == {"code", "message"}
            and all(isinstance(v, str) for v in value.values())
        )
    raise ValueError(f"the protocol document uses an unknown type {kind!r}")


def problems(direction: str, message: Any, doc: dict[str, Any] | None = None) -> list[str]:
    """What is wrong with ``message`` sent in ``direction``; empty when it follows the document."""
    doc = doc or document()
    if not isinstance(message, dict) or not isinstance(message.get("t"), str):
        return [f"not a message object with a string tag: {message!r}"]
    spec = doc[direction].get(message["t"])
    if spec is None:
        return [f"{message['t']!r} is not a {direction} message"]
    fields: dict[str, dict[str, Any]] = spec["fields"]
    found = []
    for name, value in message.items():
        if name == "t":
            continue
        field = fields.get(name)
        if field is None:
            found.append(f"{message['t']}.{name} is not in the protocol")
        elif value is None and not field["required"]:
            continue  # an optional field may be null (omitted)
        elif not _type_ok(field["type"], value):
            found.append(f"{message['t']}.{name} must be {field['type']}, got {value!r:.80}")
        elif "enum" in field and value not in field["enum"]:
            found.append(f"{message['t']}.{name} must be one of {field['enum']}, got {value!r}")
    for name, field in fields.items():
        if field["required"] and name not in message:
            found.append(f"{message['t']}.{name} is required")
    return found
