"""What an entrypoint looks like for each framework, and which runtime runs it.

- Python frameworks (``python``, ``crewai``, ``langgraph``): ``package.module:attribute``, a module
  path relative to the crew's folder (``src.my_crew.crew:MyCrew``).
- ``langgraph-js``: ``./path/file.ts:export`` — a file inside the crew's folder (``.ts``, ``.mts``,
  ``.cts``, ``.tsx``, ``.js``, ``.mjs``, ``.cjs``, ``.jsx``) and the name it exports (``default``
  for a default export), as the reference product and ``langgraph.json`` write it.

A JavaScript entrypoint is a path the runtime opens, so it is checked strictly here (relative, no
``..``, no hidden or odd path segments) and once more by the runtime against the real folder.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

PYTHON_FRAMEWORKS = ("python", "crewai", "langgraph")
JS_FRAMEWORKS = ("langgraph-js",)
FRAMEWORKS = (*PYTHON_FRAMEWORKS, *JS_FRAMEWORKS)
JS_SUFFIXES = (".ts", ".mts", ".cts", ".tsx", ".js", ".mjs", ".cjs", ".jsx")
# Matched against the whole value (fullmatch): "a:b\n" is not an entrypoint.
_PYTHON_RE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
_JS_EXPORT_RE = re.compile(r"[A-Za-z_$][\w$]{0,127}", re.ASCII)
_JS_SEGMENT_RE = re.compile(r"[\w@+-][\w@+.-]{0,127}", re.ASCII)


def runtime_of(framework: str) -> str:
    """``"node"`` for JavaScript frameworks, else ``"python"`` (the protocol's ``hello.runtime``)."""
    return "node" if framework in JS_FRAMEWORKS else "python"


def module_path(relative: str) -> str | None:
    """``src/my_crew/crew.py`` → ``src.my_crew.crew``; None when it is not importable as such."""
    path = PurePosixPath(relative.replace("\\", "/").removeprefix("./"))
    if path.suffix != ".py":
        return None
    parts = list(path.with_suffix("").parts)
    if parts and parts[-1] == "__init__":
        parts.pop()
    if not parts or not all(p.isidentifier() for p in parts):
        return None
    return ".".join(parts)


def js_file(entrypoint: str) -> str | None:
    """The file part of a JavaScript entrypoint, normalised (``src/graph.ts``); None if invalid."""
    file, sep, export = entrypoint.rpartition(":")
    if not sep or not _JS_EXPORT_RE.fullmatch(export):
        return None
    parts = file.removeprefix("./").split("/")
    if not file or not all(_JS_SEGMENT_RE.fullmatch(p) for p in parts):
        return None  # empty, absolute, "..", "." or hidden segments, odd characters
    if not parts[-1].endswith(JS_SUFFIXES) or any(p in ("node_modules",) for p in parts):
        return None
    return "/".join(parts)


def problem(framework: str, entrypoint: str) -> str | None:
    """Why ``entrypoint`` cannot be one for ``framework``, or None."""
    if framework in JS_FRAMEWORKS:
        if js_file(entrypoint) is None:
            return (
                "must look like './src/graph.ts:graph' (a .ts/.js file inside the crew's folder"
                " and the name it exports)"
            )
        return None
    if not _PYTHON_RE.fullmatch(entrypoint):
        return "must look like 'package.module:attribute'"
    return None
