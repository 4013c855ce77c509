"""What ``crewyard init`` can tell about a crew folder: framework and entrypoint, with a reason.

Signals, strongest first:

1. ``langgraph.json`` — ``{"graphs": {"agent": "./src/agent/graph.py:graph"}}`` names the graph
   (→ ``src.agent.graph:graph``; the first graph when there are several); a ``.ts``/``.js`` file
   there makes a ``langgraph-js`` crew (``./src/graph.ts:graph``, as written).
2. ``package.json`` depending on ``@langchain/langgraph`` — a LangGraph.js crew; the entrypoint is
   the exported compiled graph found in its sources (:mod:`.detect_js`).
3. ``pyproject.toml`` with ``[tool.crewai]`` — a CrewAI project; the entrypoint is the
   ``@CrewBase`` class found in its sources (a ``Flow`` subclass for ``type = "flow"``).
4. A ``@CrewBase`` class in any module.
5. A module that builds a LangGraph graph (``graph = builder.compile()``).
6. A module with a top-level ``run`` / ``kickoff`` / ``main`` function → plain Python.

Entrypoints are module paths relative to the folder (``src/my_crew/crew.py`` →
``src.my_crew.crew``), the form the reference product's docs use. Nothing is imported or
executed: sources are only read and scanned, so detection is safe on untrusted folders.
:func:`detect` returns None when it cannot tell; the CLI then asks.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import msgspec

from . import detect_js
from .crewfile import CrewConfigError, parse
from .entrypoints import JS_SUFFIXES, module_path
from .sourcefiles import walk

SKIP_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".venv",
        "venv",
        "env",
        ".env",
        "node_modules",
        "__pycache__",
        "build",
        "dist",
        "site-packages",
        ".tox",
        ".nox",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        "tests",
        "test",
    }
)
MAX_FILES = 2000
MAX_BYTES = 1 << 20

_CREWBASE_RE = re.compile(
    r"^@CrewBase\b[^\n]*\n(?:[ \t]*@[^\n]*\n|[ \t]*#[^\n]*\n|\s*\n)*class\s+([A-Za-z_]\w*)", re.M
)
_FLOW_RE = re.compile(r"^class\s+([A-Za-z_]\w*)\s*\(\s*(?:crewai\.(?:flow\.)?)?Flow\b", re.M)
_GRAPH_RE = re.compile(r"^([A-Za-z_]\w*)\s*(?::[^=\n]+)?=\s*[^\n]*\.compile\(", re.M)
_FUNC_RE = re.compile(r"^(?:async\s+)?def\s+(run|kickoff|main)\s*\(", re.M)
_FUNC_PREFERENCE = ("run", "kickoff", "main")
_FILE_PREFERENCE = ("main.py", "crew.py", "app.py", "agent.py", "graph.py")


class Detection(msgspec.Struct, frozen=True, kw_only=True):
    framework: str
    entrypoint: str
    reason: str


def _sources(root: Path) -> Iterator[tuple[str, str]]:
    """(relative posix path, text) of the folder's Python files, shallow ones first."""
    found = walk(root, SKIP_DIRS, lambda p: p.suffix == ".py", MAX_FILES)
    found.sort(key=lambda p: (len(p.relative_to(root).parts), _file_rank(p.name), str(p)))
    for path in found[:MAX_FILES]:
        try:
            if path.stat().st_size > MAX_BYTES:
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        yield path.relative_to(root).as_posix(), text


def _file_rank(name: str) -> int:
    return _FILE_PREFERENCE.index(name) if name in _FILE_PREFERENCE else len(_FILE_PREFERENCE)


def _from_langgraph_json(root: Path) -> Detection | None:
    path = root / "langgraph.json"
    if not path.is_file():
        return None
    try:
        graphs = json.loads(path.read_text(encoding="utf-8")).get("graphs") or {}
    except (OSError, ValueError, AttributeError):
        return None
    for name, spec in graphs.items() if isinstance(graphs, dict) else ():
        if isinstance(spec, dict):  # newer files: {"path": "./x.py:graph", "description": "…"}
            spec = spec.get("path")
        file, _, attr = str(spec).rpartition(":")
        others = f" (also defines: {', '.join(k for k in graphs if k != name)})" if len(graphs) > 1 else ""
        reason = f"langgraph.json names graph {name!r} at {spec}{others}"
        if file.endswith(JS_SUFFIXES):
            return Detection(framework="langgraph-js", entrypoint=str(spec), reason=reason)
        module = module_path(file)
        if module and attr.isidentifier():
            return Detection(framework="langgraph", entrypoint=f"{module}:{attr}", reason=reason)
    return None


def _crewai_project(root: Path) -> dict[str, object] | None:
    path = root / "pyproject.toml"
    if not path.is_file():
        return None
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return None
    section = doc.get("tool", {}).get("crewai")
    return section if isinstance(section, dict) else None


def _find(
    sources: list[tuple[str, str]], pattern: re.Pattern[str], needs: str = ""
) -> tuple[str, str] | None:
    for relative, text in sources:
        if needs and needs not in text:
            continue
        match = pattern.search(text)
        module = module_path(relative)
        if match and module:
            return f"{module}:{match.group(1)}", relative
    return None


def _function(sources: list[tuple[str, str]]) -> tuple[str, str] | None:
    for relative, text in sources:
        module = module_path(relative)
        names = set(_FUNC_RE.findall(text))
        if module and names:
            best = next(n for n in _FUNC_PREFERENCE if n in names)
            return f"{module}:{best}", relative
    return None


def detect(root: Path) -> Detection | None:
    """Framework and entrypoint of the crew in ``root``, or None when they cannot be told."""
    found = _from_langgraph_json(root)
    if found is not None:
        return found
    if detect_js.is_langgraph_js(root):
        graph = detect_js.find_graph(root)
        if graph is not None:
            return Detection(
                framework="langgraph-js",
                entrypoint=graph[0],
                reason=f"package.json depends on {detect_js.LANGGRAPH_PACKAGE}; compiled graph in {graph[1]}",
            )
    sources = list(_sources(root))
    crewai = _crewai_project(root)
    if crewai is not None:
        is_flow = crewai.get("type") == "flow"
        hit = _find(sources, _FLOW_RE) if is_flow else _find(sources, _CREWBASE_RE)
        if hit is not None:
            kind = "Flow subclass" if is_flow else "@CrewBase class"
            return Detection(
                framework="crewai",
                entrypoint=hit[0],
                reason=f"pyproject.toml has [tool.crewai]; {kind} in {hit[1]}",
            )
    hit = _find(sources, _CREWBASE_RE)
    if hit is not None:
        return Detection(framework="crewai", entrypoint=hit[0], reason=f"@CrewBase class in {hit[1]}")
    hit = _find(sources, _GRAPH_RE, needs="langgraph")
    if hit is not None:
        return Detection(
            framework="langgraph", entrypoint=hit[0], reason=f"compiled LangGraph graph in {hit[1]}"
        )
    hit = _function(sources)
    if hit is not None:
        name = hit[0].rpartition(":")[2]
        return Detection(framework="python", entrypoint=hit[0], reason=f"function {name}() in {hit[1]}")
    return None


def _toml_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def render_config(
    framework: str, entrypoint: str, python: str | None = "3.11", *, exclude: tuple[str, ...] = ("tests",)
) -> str:
    """The text of a ``crewyard.toml`` for this crew; raises CrewConfigError if it would be invalid."""
    lines = [
        "# How crewyard builds and runs this crew (a crewship.toml is read the same way).",
        "[deployment]",
        f"framework = {_toml_string(framework)}",
        f"entrypoint = {_toml_string(entrypoint)}",
    ]
    if python:
        lines.append(f"python = {_toml_string(python)}")
    if exclude:
        lines += ["", "[build]", f"exclude = [{', '.join(_toml_string(e) for e in exclude)}]"]
    text = "\n".join(lines) + "\n"
    try:
        parse(text, "crewyard.toml")
    except CrewConfigError as exc:
        raise CrewConfigError(f"cannot write crewyard.toml: {exc}") from None
    return text
