"""Entry point of a run: ``python -m crewyard_runtime``.

Reads ``CREWYARD_ENTRYPOINT`` (``module:attr``), ``CREWYARD_FRAMEWORK`` and the input (JSON in
``CREWYARD_INPUT_FILE`` or ``CREWYARD_INPUT``), runs the crew through its adapter and reports the
outcome. Exit codes: 0 result sent, 1 crew error sent, 2 bad invocation.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

from . import _protocol
from .adapters import run_entrypoint


def _input() -> dict[str, object]:
    path = os.environ.get("CREWYARD_INPUT_FILE")
    if path:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    else:
        text = os.environ.get("CREWYARD_INPUT", "{}")
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("run input must be a JSON object")
    return value


def main() -> int:
    _protocol.open_channel()
    entrypoint = os.environ.get("CREWYARD_ENTRYPOINT", "")
    framework = os.environ.get("CREWYARD_FRAMEWORK", "python")
    try:
        payload = _input()
        output = run_entrypoint(entrypoint, framework, payload)
    except BaseException as exc:  # the crew's failure is the run's result, whatever it is
        tb = traceback.format_exc()
        sys.stderr.flush()
        message = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
        _protocol.send({"t": "error", "error_type": type(exc).__name__, "message": message, "traceback": tb})
        return 1
    sys.stdout.flush()
    sys.stderr.flush()
    _protocol.send({"t": "result", "output": output})
    return 0


if __name__ == "__main__":
    sys.exit(main())
