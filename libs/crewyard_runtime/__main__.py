"""Entry point of a run: ``python -m crewyard_runtime``.

Speaks the protocol of ``protocol.json`` with the runner: says ``hello``; on ``prepare`` applies
the crew's environment variables to its own environment and imports the crew (``ready``); on
``start`` calls it with the run's input and reports ``result`` or ``error``. The crew's
environment reaches the runtime only through ``prepare``: no process on the host ever has it.

Variables the interpreter reads only at its own start-up (``PYTHONHASHSEED``, ``PYTHONUTF8`` …)
therefore act on the processes the crew starts, not on the runtime's interpreter itself.

Exit codes: 0 result sent, 1 crew error sent, 2 the protocol was broken; SIGKILL, or 1 without an
error line, when the runner's keepalives stopped (``_watchdog``). The process ends as soon
as that last line is out, without the interpreter's teardown (``_protocol.exit_now``).
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any, NoReturn

from . import _protocol, forkserver, thread
from .adapters import Loaded, invoke, load


def _report(exc: BaseException) -> None:
    tb = traceback.format_exc()
    sys.stderr.flush()
    message = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
    _protocol.send({"t": "error", "error_type": type(exc).__name__, "message": message, "traceback": tb})


def _string_map(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _protocol.ProtocolError(f"{what} must be an object of strings")
    return {str(k): v for k, v in value.items()}


def _prepare(message: dict[str, Any]) -> Loaded:
    env = _string_map(message.get("env", {}), "prepare.env")
    os.environ.update(env)
    entrypoint = str(message.get("entrypoint") or "")
    framework = str(message.get("framework") or "python")
    for key, field in (("CREWYARD_PROJECT", "project"), ("CREWYARD_DEPLOYMENT_ID", "deployment_id")):
        if isinstance(message.get(field), str):
            os.environ[key] = message[field]
    os.environ["CREWYARD_ENTRYPOINT"] = entrypoint
    os.environ["CREWYARD_FRAMEWORK"] = framework
    return load(entrypoint, framework)


def main() -> int:
    fork_fd = forkserver.requested()
    _protocol.open_channel()
    _protocol.send({"t": "hello", "v": _protocol.VERSION, "runtime": _protocol.RUNTIME})
    try:
        prepare = _protocol.expect("prepare")
    except _protocol.ProtocolError as exc:
        _report(exc)
        return 2
    _protocol.linger_at_exit(prepare.get("linger"))
    if fork_fd is None:  # (a fork server must import with no thread of its own running)
        _protocol.read_ahead()
    try:
        loaded = _prepare(prepare)
        if fork_fd is not None and (why := forkserver.forkable()):
            raise RuntimeError(f"this crew cannot be forked from a server: {why}")
    except _protocol.ProtocolError as exc:
        _report(exc)
        return 2
    except BaseException as exc:  # the crew's failure is the run's result, whatever it is
        _report(exc)
        return 1
    sys.stdout.flush()
    _protocol.send({"t": "ready"})
    if fork_fd is not None:
        return forkserver.serve(fork_fd, lambda: _forked(loaded))
    return _run(loaded)


def _forked(loaded: Loaded) -> NoReturn:
    """A run forked from the server: it speaks as a freshly started runtime would."""
    _protocol.send({"t": "hello", "v": _protocol.VERSION, "runtime": _protocol.RUNTIME})
    _protocol.send({"t": "ready"})
    _protocol.exit_now(_run(loaded))


def _run(loaded: Loaded) -> int:
    """From ``start`` to the run's ``result`` or ``error``."""
    try:
        start = _protocol.expect("start")
        payload = start.get("input", {})
        if not isinstance(payload, dict):
            raise _protocol.ProtocolError("start.input must be a JSON object")
    except _protocol.ProtocolError as exc:
        _report(exc)
        return 2
    os.environ["CREWYARD_RUN_ID"] = str(start.get("run_id") or "")
    started_thread = start.get("thread")
    thread.begin(started_thread if isinstance(started_thread, dict) and started_thread.get("id") else None)
    _protocol.serve_replies()
    try:
        output = invoke(loaded, payload)
    except BaseException as exc:
        _report(exc)
        return 1
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        _protocol.send({"t": "result", "output": output})
    except Exception as exc:  # NaN, a cycle, keys that are tuples, a __str__ that raises…
        why = f"{type(exc).__name__}: {exc}"
        if "float" in str(exc):
            why += " (NaN and Infinity have no JSON form)"
        _report(ValueError(f"the crew's result is not JSON: {why}"))
        return 1
    return 0


if __name__ == "__main__":
    _protocol.exit_now(main())  # not sys.exit: see exit_now
