"""``langgraph.json`` (the file LangGraph projects carry) read as a crew configuration.

Used when a crew has no ``crewyard.toml`` or ``crewship.toml``. Its ``graphs`` map names each
graph's file and export: ``{"graphs": {"agent": "./src/graph.ts:graph"}}``. A ``.ts``/``.js``
file makes a ``langgraph-js`` crew with that entrypoint as written; a ``.py`` file a ``langgraph``
crew (``./src/agent/graph.py:graph`` → ``src.agent.graph:graph``). One graph is the crew's one
deployment; several become named deployments (``[deployments.<graph name>]``, chosen with
``--name``). ``python_version`` becomes ``python``; an ``env`` object becomes the crew's default
environment variables. Everything else in the file (``dependencies``, ``node_version``,
``dockerfile_lines``, ``store``, ``auth`` …) is LangGraph Platform's and not read: dependencies
come from ``package.json`` or the Python requirement files.

:func:`to_config_doc` turns the file into the document a ``crewyard.toml`` would parse into, so
one code path (:mod:`.crewfile`) validates both. JSON can spell a lone surrogate (``"\\ud800"``),
which is not text: no UTF-8 encoder (our responses, events, logs) takes it, so a file holding one
anywhere, in a name or a value, read or not, is refused naming where. Graph names are quoted
(``repr``) in every message.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .entrypoints import JS_SUFFIXES, module_path

FILE = "langgraph.json"
MAX_GRAPHS = 64
#: How a lone surrogate gets into decoded JSON (text with one is refused before decoding); pairs
#: match too, and then the decoded document is searched.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


class LanggraphJsonError(ValueError):
    """The file cannot be read as a crew configuration (the message names the reason)."""


def _graph_spec(name: str, value: Any) -> str:
    if isinstance(value, dict):  # newer files: {"path": "./x.py:graph", "description": "…"}
        value = value.get("path")
    if not isinstance(value, str) or ":" not in value:
        raise LanggraphJsonError(f"graph {name!r} must be a string like './src/graph.ts:graph'")
    return value


def _unencodable(doc: Any) -> str | None:
    """Where in ``doc`` (a key or a string value) is a string UTF-8 cannot encode, or None.

    Level by level, without recursion (JSON decodes deeper than Python recurses); each node keeps
    a link to its parent and the path is spelled only for the one found, since spelling every
    node's path would cost depth times key length per node (megabytes of keys nested hundreds deep).
    """
    level: list[_Node] = [(None, "", doc)]
    while level:
        deeper: list[_Node] = []
        for node in level:
            value = node[2]
            if isinstance(value, str):
                if not _encodes(value):
                    return _path(node)
            elif isinstance(value, dict):
                for key, item in value.items():
                    if not _encodes(key):
                        return f"a key in {_path(node)}"
                    deeper.append((node, f".{key}", item))
            elif isinstance(value, list):
                deeper.extend((node, f"[{i}]", item) for i, item in enumerate(value))
        level = deeper
    return None


_Node = tuple[Any, str, Any]  # (parent node or None, ".key" or "[index]", value)
_MAX_PATH = 200


def _path(node: _Node) -> str:
    steps: list[str] = []
    while node[0] is not None:
        steps.append(node[1])
        node = node[0]
    path = "".join(reversed(steps)).removeprefix(".")
    path = path if len(path) <= _MAX_PATH else "…" + path[-_MAX_PATH:]
    return repr(path) if path else "the document"


def _encodes(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _deployment(name: str, spec: str) -> dict[str, Any]:
    file, _, attr = spec.rpartition(":")
    if file.endswith(JS_SUFFIXES):
        return {"framework": "langgraph-js", "entrypoint": spec}
    module = module_path(file)
    if file.endswith(".py") and module is not None:
        return {"framework": "langgraph", "entrypoint": f"{module}:{attr}"}
    raise LanggraphJsonError(
        f"graph {name!r}: {spec!r} names neither a Python module nor a .ts/.js file in the crew's folder"
    )


def to_config_doc(text: str) -> tuple[dict[str, Any], list[str]]:
    """The configuration document of a ``langgraph.json`` and the warnings reading it produced."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise LanggraphJsonError(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise LanggraphJsonError("nested too deeply to read") from None
    if not isinstance(doc, dict):
        raise LanggraphJsonError("must be a JSON object")
    where = _unencodable(doc) if _SURROGATE_ESCAPE.search(text) else None
    if where is not None:
        raise LanggraphJsonError(
            f"{where} holds a lone surrogate (a \\uD800-\\uDFFF escape not part of a pair), which is"
            " not text: it cannot be encoded as UTF-8"
        )
    graphs = doc.get("graphs")
    if not isinstance(graphs, dict) or not graphs:
        raise LanggraphJsonError(
            '\'graphs\' must name at least one graph, e.g. {"agent": "./src/graph.ts:graph"}'
        )
    if len(graphs) > MAX_GRAPHS:
        raise LanggraphJsonError(f"'graphs' names more than {MAX_GRAPHS} graphs")
    warnings: list[str] = []
    tables = {
        str(name): _deployment(str(name), _graph_spec(str(name), spec)) for name, spec in graphs.items()
    }
    python = doc.get("python_version")
    if python is not None and not isinstance(python, str):
        raise LanggraphJsonError(
            f"'python_version' must be a string, e.g. \"3.10\": as the number {python!r} trailing zeros"
            " are lost (3.10 reads as 3.1)"
        )
    if python is not None:
        for table in tables.values():
            if table["framework"] == "langgraph":
                table["python"] = str(python)
    config: dict[str, Any] = {}
    env = doc.get("env")
    if isinstance(env, dict):
        config["env"] = env
    elif env is not None:
        warnings.append(
            f"{FILE}: 'env' names a file, which is not read (and not uploaded if it is .env);"
            " set the variables with `crewyard env set`"
        )
    if len(tables) == 1:
        config["deployment"] = next(iter(tables.values()))
    else:
        config["deployments"] = tables
    return config, warnings
