"""Which Node.js this machine builds and runs JavaScript crews with.

One Node per machine: the ``node`` on ``PATH`` (or ``CREWYARD_NODE``). Supported: Node 20 and newer
(LangChain.js needs 20; tsx, which runs TypeScript, needs 18). The builder records the Node it
built with in the environment's digest (its major version: native add-ons are built for it), and
runs on bwrap and process use the runner machine's Node, so both should have the same major
version. The docker backend uses the Node of its base image instead (``CREWYARD_NODE_BASE_IMAGE``).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import msgspec

from ._base import BuildFailed

MIN_MAJOR = 20


class Node(msgspec.Struct, frozen=True, kw_only=True):
    version: str  # "20.20.2"
    path: str  # the node binary (resolved)
    prefix: str  # its installation prefix (bound read-only into sandboxes at the same path)
    npm: str | None  # npm's CLI script, when npm is installed with it

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])


def _npm_cli(node: Path) -> str | None:
    """npm's own script beside this Node (``<prefix>/lib/node_modules/npm/bin/npm-cli.js``)."""
    candidates = [node.parent.parent / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"]
    found = shutil.which("npm")
    if found:
        candidates.append(Path(found).resolve())
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    return None


@functools.cache
def installed() -> Node | None:
    """This machine's Node, or None when there is none."""
    found = os.environ.get("CREWYARD_NODE") or shutil.which("node")
    if not found or not os.access(found, os.X_OK):
        return None
    try:
        out = subprocess.run(
            [found, "--version"], capture_output=True, text=True, timeout=20, check=True, env={}
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    version = out.removeprefix("v")
    if not version.split(".")[0].isdigit():
        return None
    path = Path(found).resolve()
    return Node(version=version, path=str(path), prefix=str(path.parent.parent), npm=_npm_cli(path))


def describe() -> str:
    """One line for ``crewyard doctor``."""
    node = installed()
    if node is None:
        return "not installed: langgraph-js crews cannot be built or run on bwrap/process (Node 20+ needed)"
    if node.major < MIN_MAJOR:
        return f"Node {node.version} at {node.path} is too old: langgraph-js crews need Node {MIN_MAJOR}+"
    npm = "with npm" if node.npm else "WITHOUT npm (builds of langgraph-js crews fail)"
    return f"Node {node.version} at {node.path}, {npm}"


def select() -> Node:
    """The Node to build a JavaScript crew with; BuildFailed saying what is missing otherwise."""
    node = installed()
    if node is None:
        raise BuildFailed(
            f"langgraph-js crews need Node.js {MIN_MAJOR} or newer on the build and runner machines,"
            " and this one has none (install Node.js with npm)"
        )
    if node.major < MIN_MAJOR:
        raise BuildFailed(
            f"langgraph-js crews need Node.js {MIN_MAJOR} or newer; this machine has {node.version}"
        )
    if node.npm is None:
        raise BuildFailed(f"Node.js {node.version} is installed without npm, which builds need")
    return node
