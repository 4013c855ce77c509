"""Which Python interpreters this machine can build crew environments with.

A crew's ``python = "3.12"`` is honoured when an interpreter of that minor version is here;
otherwise the deployment fails with a message listing what is available (never a silent
fallback: a crew tested on 3.12 may not run on 3.11). Without a ``python`` key the platform's own
interpreter is used. Candidates: the interpreter the platform runs on (its base, not its venv),
then ``python3.X`` on ``PATH`` and in ``/usr/bin`` and ``/usr/local/bin``.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import msgspec

from ._base import BuildFailed

_PROBE = "import json, sys; print(json.dumps(['%d.%d' % sys.version_info[:2], sys.base_prefix]))"
_MINORS = range(8, 16)


class Interpreter(msgspec.Struct, frozen=True, kw_only=True):
    version: str  # "3.11"
    path: str  # the interpreter binary (resolved)
    prefix: str  # its installation prefix (bound read-only into sandboxes at the same path)


def base_python() -> str:
    """The interpreter the platform itself is based on (the base of its venv, not the venv)."""
    return getattr(sys, "_base_executable", sys.executable)


def _probe(path: str) -> Interpreter | None:
    try:
        out = subprocess.run(
            [path, "-I", "-c", _PROBE], capture_output=True, text=True, timeout=20, check=True, env={}
        ).stdout
        version, prefix = json.loads(out)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return Interpreter(version=str(version), path=str(Path(path).resolve()), prefix=str(prefix))


@functools.cache
def available() -> tuple[Interpreter, ...]:
    """Every usable interpreter, one per minor version (the platform's own first)."""
    candidates = [base_python()]
    for minor in _MINORS:
        name = f"python3.{minor}"
        found = shutil.which(name)
        if found:
            candidates.append(found)
        candidates += [f"/usr/local/bin/{name}", f"/usr/bin/{name}"]
    seen: dict[str, Interpreter] = {}
    for path in candidates:
        if not os.access(path, os.X_OK):
            continue
        interp = _probe(path)
        if interp is not None and interp.version not in seen:
            seen[interp.version] = interp
    return tuple(seen.values())


def versions() -> list[str]:
    return sorted({i.version for i in available()}, key=lambda v: tuple(int(x) for x in v.split(".")))


def select(requested: str | None) -> Interpreter:
    """The interpreter for a crew asking for ``requested`` (``"3.11"``, ``"3.11.4"`` or None)."""
    found = available()
    if not found:
        raise BuildFailed("no usable Python interpreter on this machine")
    if requested is None:
        return found[0]
    minor = ".".join(requested.split(".")[:2])
    for interp in found:
        if interp.version == minor:
            return interp
    raise BuildFailed(
        f"the crew asks for Python {requested}, which this machine does not have;"
        f' available: {", ".join(versions())} (set python = "{versions()[-1]}" in the crew\'s'
        " config, or install that Python on the build and runner machines)"
    )
