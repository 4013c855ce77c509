"""What ``crewyard init`` can tell about a JavaScript/TypeScript crew folder (LangGraph.js).

A folder is a LangGraph.js crew when its ``package.json`` depends on ``@langchain/langgraph``
(``langgraph.json`` is read before this, by :mod:`.detect`). The entrypoint is the first exported
compiled graph found in its sources — ``export const graph = builder.compile()``, a
``const graph = ….compile()`` exported with ``export { graph }``, or ``export default ….compile()``
— preferring shallow files and the usual names (``graph.ts``, ``agent.ts``, ``index.ts``).
Sources are only read, never run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .entrypoints import JS_SUFFIXES
from .sourcefiles import walk

LANGGRAPH_PACKAGE = "@langchain/langgraph"
SKIP_DIRS = frozenset({"node_modules", "dist", "build", "out", "coverage", "test", "tests", "__tests__"})
MAX_FILES = 2000
MAX_BYTES = 1 << 20
_FILE_PREFERENCE = ("graph", "agent", "index", "main", "app")
# A top-level statement starts at the beginning of a line with one of these words.
_STATEMENT_RE = re.compile(r"^(?:export|const|let|var|function|async|class|import|type|interface)\b", re.M)
_BINDING_RE = re.compile(r"^(export\s+)?(?:const|let|var)\s+([A-Za-z_$][\w$]*)\s*(?::[^=\n]+)?=", re.M)
_DEFAULT_RE = re.compile(r"^export\s+default\s+", re.M)
_EXPORT_LIST_RE = re.compile(r"^export\s*\{([^}]*)\}", re.M)


def is_langgraph_js(root: Path) -> bool:
    """Does ``root/package.json`` depend on LangGraph.js?"""
    try:
        manifest = json.loads((root / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict):
        return False
    for key in ("dependencies", "devDependencies", "peerDependencies"):
        deps = manifest.get(key)
        if isinstance(deps, dict) and LANGGRAPH_PACKAGE in deps:
            return True
    return False


def _rank(path: Path, root: Path) -> tuple[int, int, str]:
    stem = path.name.split(".")[0]
    preference = _FILE_PREFERENCE.index(stem) if stem in _FILE_PREFERENCE else len(_FILE_PREFERENCE)
    return (len(path.relative_to(root).parts), preference, str(path))


def _is_source(path: Path) -> bool:
    return path.name.endswith(JS_SUFFIXES) and not path.name.endswith(".d.ts")


def _sources(root: Path) -> list[Path]:
    found = walk(root, SKIP_DIRS, _is_source, MAX_FILES)
    return sorted(found, key=lambda p: _rank(p, root))[:MAX_FILES]


def _statement(text: str, start: int) -> str:
    """The text of the top-level statement that begins at ``start``."""
    following = _STATEMENT_RE.search(text, start + 1)
    return text[start : following.start() if following else len(text)]


def exported_graph(text: str) -> str | None:
    """The export name of a compiled graph in this module's text, or None."""
    listed: dict[str, str] = {}  # local name → exported name
    for match in _EXPORT_LIST_RE.finditer(text):
        for part in match.group(1).split(","):
            local, _, exported = part.strip().partition(" as ")
            if local.strip():
                listed[local.strip()] = (exported or local).strip()
    for match in _BINDING_RE.finditer(text):
        exported, name = bool(match.group(1)), match.group(2)
        if (exported or name in listed) and ".compile(" in _statement(text, match.start()):
            return name if exported else listed[name]
    for match in _DEFAULT_RE.finditer(text):
        if ".compile(" in _statement(text, match.start()):
            return "default"
    return None


def find_graph(root: Path) -> tuple[str, str] | None:
    """``("./src/graph.ts:graph", "src/graph.ts")`` for the crew in ``root``, or None."""
    for path in _sources(root):
        try:
            if path.stat().st_size > MAX_BYTES:
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if "compile(" not in text:
            continue
        name = exported_graph(text)
        if name is not None:
            relative = path.relative_to(root).as_posix()
            return f"./{relative}:{name}", relative
    return None
