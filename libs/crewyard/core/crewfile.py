"""Reading a crew's configuration: ``crewyard.toml``, or the reference product's ``crewship.toml``,
or — when a crew has neither — the ``langgraph.json`` LangGraph projects carry (:mod:`.langgraph_json`).

Layouts: one ``[deployment]`` table, or several ``[deployments.<name>]`` tables (never both).
``[build] exclude`` may sit at the top level or inside a deployment table. Besides the reference
keys (``framework``, ``entrypoint``, ``python``, ``profile``) crewyard reads its own: ``timeout``
(seconds), ``memory`` (e.g. ``"512m"``), ``cpus``, ``pids``, ``network`` (``default`` | ``none`` |
``host``), ``max_concurrent_runs``, ``warm`` (sandboxes kept started, crew imported, for the
next runs; 0 turns that off) and an ``[env]`` table of defaults (names checked against
:mod:`.envnames`). Unknown keys produce
warnings; wrong types raise :class:`CrewConfigError` naming the file, the key and the reason.

Entrypoints are checked per framework (:mod:`.entrypoints`: ``module:attribute`` for Python,
``./src/graph.ts:graph`` for ``langgraph-js``); ``python`` means nothing to a JavaScript crew and
is ignored with a warning.

An upload's config file is at most 1 MiB, but what it expands into must stay small too (a 750 KB
file once made each of 10,000 deployments a copy of 100,000 top-level excludes: 8 GiB): at most
:data:`MAX_DEPLOYMENTS` deployments (as ``langgraph.json``'s graphs), :data:`MAX_EXCLUDES`
patterns of at most :data:`MAX_EXCLUDE_LENGTH` characters in a deployment's exclude list and
:data:`MAX_ENV_VARS` variables in its env table (the top-level ones counted in). The top-level
``[build] exclude`` and ``[env]`` are shared by the deployments that add nothing of their own,
never copied into each (read-only, like the rest of a parsed config). Text that cannot be
encoded as UTF-8 (a lone surrogate, which a JSON ``\\ud800`` escape makes) is refused wherever it
is, before anything reads it: no error message, event or response can carry it.
"""

from __future__ import annotations

import math
import re
import tomllib
from typing import Any

import msgspec

from crewyard.errors import CrewyardError

from . import entrypoints, langgraph_json
from .bounds import MAX_CONCURRENCY, MAX_TIMEOUT_S
from .envnames import name_problem, value_problem

#: In order of precedence: a langgraph.json is read only when neither TOML file is there.
CONFIG_FILES = ("crewyard.toml", "crewship.toml", langgraph_json.FILE)
FRAMEWORKS = entrypoints.FRAMEWORKS
NETWORKS = ("default", "none", "host")
_MEMORY_RE = re.compile(r"\d{1,15}(\.\d{1,6})?[kmg]?", re.IGNORECASE | re.ASCII)
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_PYTHON_RE = re.compile(r"3\.\d{1,2}(\.\d{1,3})?")
#: Upper bounds of the numeric keys (finite, and within what any engine or kernel accepts).
_MAXIMA: dict[str, float] = {
    "timeout_s": MAX_TIMEOUT_S,
    "cpus": 1024,
    "pids": 1 << 22,
    "max_concurrent_runs": MAX_CONCURRENCY,
}
MAX_MEMORY_BYTES = 1 << 40
#: Less memory than an interpreter starts in: every run would only fail.
MIN_MEMORY_BYTES = 16 << 20
#: The most warm sandboxes a crew's config may ask for (the platform may allow fewer).
MAX_WARM = 16
#: The most deployments one file may define (a ``langgraph.json`` its graphs).
MAX_DEPLOYMENTS = langgraph_json.MAX_GRAPHS
#: The most ``exclude`` patterns a deployment may have, the top-level ones counted in.
MAX_EXCLUDES = 1000
#: The longest ``exclude`` pattern (a path longer than Linux's PATH_MAX matches nothing).
MAX_EXCLUDE_LENGTH = 4096
#: The most ``env`` variables a deployment may have, the top-level ones counted in.
MAX_ENV_VARS = 256


class CrewConfigError(CrewyardError, ValueError):
    """The crew's configuration file is missing or invalid."""


class CrewConfig(msgspec.Struct, kw_only=True, omit_defaults=True):
    entrypoint: str
    framework: str = "python"
    name: str | None = None
    python: str | None = None
    profile: str | None = None
    timeout_s: float | None = None
    memory: str | None = None
    cpus: float | None = None
    pids: int | None = None
    network: str = "default"
    max_concurrent_runs: int | None = None
    warm: int | None = None
    env: dict[str, str] = msgspec.field(default_factory=dict)
    exclude: list[str] = msgspec.field(default_factory=list)


class ParsedConfig(msgspec.Struct, kw_only=True):
    file: str
    deployments: list[CrewConfig]
    warnings: list[str]

    def select(self, name: str | None) -> CrewConfig:
        """The deployment called ``name``; the only one when ``name`` is None."""
        if name is None:
            if len(self.deployments) == 1:
                return self.deployments[0]
            names = ", ".join(d.name or "?" for d in self.deployments)
            raise CrewConfigError(
                f"{self.file} defines several deployments ({names}); choose one with --name"
            )
        for dep in self.deployments:
            if dep.name == name:
                return dep
        raise CrewConfigError(f"{self.file} has no deployment named {name!r}")


_KEYS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "framework": (str, "framework"),
    "entrypoint": (str, "entrypoint"),
    "python": (str, "python"),
    "profile": (str, "profile"),
    "timeout": ((int, float), "timeout_s"),
    "memory": ((str, int), "memory"),
    "cpus": ((int, float), "cpus"),
    "pids": (int, "pids"),
    "network": (str, "network"),
    "max_concurrent_runs": (int, "max_concurrent_runs"),
    "warm": (int, "warm"),
}
_TOP_LEVEL = {"deployment", "deployments", "build", "chat", "apis", "env"}
_IGNORED_TABLES = {"chat", "apis"}  # accepted for compatibility; crewyard has no use for them yet


def parse(text: str, file: str = "crewyard.toml") -> ParsedConfig:
    _check_encodable(text, file)
    if file.endswith(".json"):
        try:
            doc, warnings = langgraph_json.to_config_doc(text)
        except langgraph_json.LanggraphJsonError as exc:
            raise CrewConfigError(f"{file}: {exc}") from None
    else:
        try:
            doc = tomllib.loads(text)
        except ValueError as exc:  # TOMLDecodeError, or an integer of more digits than int() takes
            raise CrewConfigError(f"{file}: not valid TOML: {exc}") from None
        except RecursionError:  # arrays nested thousands deep
            raise CrewConfigError(f"{file}: nested too deeply to read") from None
        warnings = [f"{file}: unknown key {k!r} ignored" for k in doc if k not in _TOP_LEVEL]
    single, multi = doc.get("deployment"), doc.get("deployments")
    if single is not None and multi is not None:
        raise CrewConfigError(f"{file}: use either [deployment] or [deployments.<name>], not both")
    if single is None and multi is None:
        raise CrewConfigError(f"{file}: missing [deployment] table (with framework and entrypoint)")
    build = _table(doc, "build", file)
    top_exclude = _exclude(build, file, "build.exclude")
    top_env = _env(doc.get("env"), file, "env")
    deployments: list[CrewConfig] = []
    if single is not None:
        if not isinstance(single, dict):
            raise CrewConfigError(f"{file}: [deployment] must be a table")
        deployments.append(_deployment(single, file, "deployment", None, top_exclude, top_env, warnings))
    else:
        if not isinstance(multi, dict) or not multi:
            raise CrewConfigError(
                f"{file}: [deployments] must contain at least one [deployments.<name>] table"
            )
        if len(multi) > MAX_DEPLOYMENTS:
            raise CrewConfigError(
                f"{file}: [deployments] defines {len(multi)} deployments, more than the limit of"
                f" {MAX_DEPLOYMENTS}"
            )
        for name, table in multi.items():
            if not _NAME_RE.fullmatch(name):
                raise CrewConfigError(
                    f"{file}: deployment name {name!r} must be lower-case letters, digits, - or _"
                )
            if not isinstance(table, dict):
                raise CrewConfigError(f"{file}: [deployments.{name}] must be a table")
            deployments.append(
                _deployment(table, file, f"deployments.{name}", name, top_exclude, top_env, warnings)
            )
    return ParsedConfig(file=file, deployments=deployments, warnings=warnings)


def _table(doc: dict[str, Any], key: str, file: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise CrewConfigError(f"{file}: '{key}' must be a table")
    return value


def _check_encodable(text: str, file: str) -> None:
    """Refuse text holding a lone surrogate (only a str made in Python can: UTF-8 bytes cannot)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        line = text.count("\n", 0, exc.start) + 1
        raise CrewConfigError(
            f"{file}: line {line} holds {text[exc.start]!r}, a lone surrogate, which is not text"
            " (it cannot be encoded as UTF-8)"
        ) from None


def _at_most(what: str, count: int, inherited: int, limit: int, noun: str, top: str) -> None:
    """Refuse ``count`` items (and ``inherited`` top-level ones) past ``limit``."""
    if inherited + count > limit:
        also = f" (with the {inherited} of the top-level {top})" if inherited else ""
        raise CrewConfigError(f"{what} {inherited + count} {noun}{also}, more than the limit of {limit}")


def _exclude(build: dict[str, Any], file: str, where: str, inherited: int = 0) -> list[str]:
    """The patterns at ``build.exclude``; ``inherited`` top-level ones count against the limit."""
    value = build.get("exclude", [])
    if not isinstance(value, list):
        raise CrewConfigError(f"{file}: '{where}' must be an array of strings")
    _at_most(f"{file}: '{where}' has", len(value), inherited, MAX_EXCLUDES, "patterns", "[build] exclude")
    for pattern in value:
        if not isinstance(pattern, str):
            raise CrewConfigError(f"{file}: '{where}' must be an array of strings")
        if len(pattern) > MAX_EXCLUDE_LENGTH:
            raise CrewConfigError(
                f"{file}: '{where}' has a pattern longer than the limit of {MAX_EXCLUDE_LENGTH} characters"
            )
    return list(value)


def _env(value: Any, file: str, where: str, inherited: int = 0) -> dict[str, str]:
    """The variables of the ``where`` table; ``inherited`` top-level ones count against the limit
    (a name set in both counts twice: an estimate that errs towards refusing, never towards size)."""
    if value is None:
        return {}
    scalars = str | int | float | bool
    if not isinstance(value, dict):
        raise CrewConfigError(f"{file}: '{where}' must be a table of strings")
    _at_most(f"{file}: '{where}' sets", len(value), inherited, MAX_ENV_VARS, "variables", "[env]")
    if not all(isinstance(v, scalars) for v in value.values()):
        raise CrewConfigError(f"{file}: '{where}' must be a table of strings")
    env = {str(k): str(v) for k, v in value.items()}
    for key, text in env.items():
        problem = name_problem(key) or value_problem(key, text)
        if problem is not None:
            raise CrewConfigError(f"{file}: '{where}': {problem}")
    return env


def _deployment(
    table: dict[str, Any],
    file: str,
    where: str,
    name: str | None,
    top_exclude: list[str],
    top_env: dict[str, str],
    warnings: list[str],
) -> CrewConfig:
    fields: dict[str, Any] = {"name": name}
    for key, value in table.items():
        if key in ("build", "env") or key in _IGNORED_TABLES:
            continue
        spec = _KEYS.get(key)
        if spec is None:
            warnings.append(f"{file}: unknown key '{where}.{key}' ignored")
            continue
        types, field = spec
        if key == "python" and isinstance(value, (int, float)) and not isinstance(value, bool):
            # TOML reads 3.10 as the number 3.1: which version was meant can no longer be told.
            raise CrewConfigError(
                f"{file}: '{where}.python' must be quoted, e.g. python = \"3.10\": written as the number"
                f" {value!r}, TOML loses trailing zeros (3.10 reads as 3.1)"
            )
        if isinstance(value, bool) or not isinstance(value, types):
            expected = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
            raise CrewConfigError(f"{file}: '{where}.{key}' must be {expected}, got {type(value).__name__}")
        fields[field] = str(value) if key == "memory" else value
    if "entrypoint" not in fields:
        raise CrewConfigError(f"{file}: '{where}.entrypoint' is required (e.g. \"my_crew.main:run\")")
    framework = fields.get("framework", "python")
    if framework not in FRAMEWORKS:
        raise CrewConfigError(
            f"{file}: '{where}.framework' must be one of {', '.join(FRAMEWORKS)}, got {framework!r}"
        )
    problem = entrypoints.problem(framework, fields["entrypoint"])
    if problem is not None:
        raise CrewConfigError(f"{file}: '{where}.entrypoint' {problem}, got {fields['entrypoint']!r}")
    if framework in entrypoints.JS_FRAMEWORKS and "python" in fields:
        warnings.append(f"{file}: '{where}.python' ignored: a {framework} crew runs on Node")
        del fields["python"]
    if fields.get("network", "default") not in NETWORKS:
        raise CrewConfigError(f"{file}: '{where}.network' must be one of {', '.join(NETWORKS)}")
    if "python" in fields and not _PYTHON_RE.fullmatch(fields["python"]):
        raise CrewConfigError(
            f"{file}: '{where}.python' must be a version like \"3.11\" (a string), got {fields['python']!r}"
        )
    if "memory" in fields and not _MEMORY_RE.fullmatch(fields["memory"]):
        raise CrewConfigError(f'{file}: \'{where}.memory\' must be a size like "512m" or "2g"')
    if (
        "memory" in fields
        and not MIN_MEMORY_BYTES <= (memory_bytes(fields["memory"]) or 0) <= MAX_MEMORY_BYTES
    ):
        raise CrewConfigError(f"{file}: '{where}.memory' must be at least 16m and at most 1024g")
    for key, most in _MAXIMA.items():
        if key in fields and not (0 < fields[key] <= most and math.isfinite(fields[key])):
            raise CrewConfigError(
                f"{file}: '{where}.{key.removesuffix('_s')}' must be positive and at most {most:g}"
            )
    if "warm" in fields and not 0 <= fields["warm"] <= MAX_WARM:
        raise CrewConfigError(f"{file}: '{where}.warm' must be 0 to {MAX_WARM}")
    build = table.get("build", {})
    if not isinstance(build, dict):
        raise CrewConfigError(f"{file}: '{where}.build' must be a table")
    # A deployment adding nothing shares the top-level list and table: never a copy per deployment.
    exclude = _exclude(build, file, f"{where}.build.exclude", len(top_exclude))
    fields["exclude"] = top_exclude + exclude if exclude else top_exclude
    env = _env(table.get("env"), file, f"{where}.env", len(top_env))
    fields["env"] = {**top_env, **env} if env else top_env
    return CrewConfig(**fields)


def valid_memory(memory: str) -> bool:
    """Whether ``memory`` reads as a size (``"512m"``, ``"2g"``, a number of bytes)."""
    return (
        bool(_MEMORY_RE.fullmatch(memory.strip())) and (memory_bytes(memory.strip()) or 0) <= MAX_MEMORY_BYTES
    )


def memory_bytes(memory: str | None) -> int | None:
    """``"512m"`` → 536870912."""
    if memory is None:
        return None
    unit = memory[-1].lower()
    scale = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(unit, 1)
    number = memory[:-1] if unit in "kmg" else memory
    return int(float(number) * scale)
