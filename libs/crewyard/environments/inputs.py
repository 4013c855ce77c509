"""What a crew's environment is made from, read from its folder, and the digest that names it.

- ``requirements.txt``: installed **as written** (``-r``, with the crew's folder as working
  directory, so hashes, options and continuation lines keep their meaning).
- ``pyproject.toml`` with ``[project]`` and ``[build-system]``: the crew is a package and is
  installed into its environment (not editable, build isolated), so ``src/`` layouts and
  namespace packages import as they do for the author. With a ``requirements.txt`` as well,
  both go into one resolution: the requirements pin what the project's dependencies allow.
- ``pyproject.toml`` with ``[project]`` but no build backend: only its ``dependencies``.
- ``uv.lock`` next to a package's ``pyproject.toml``: the locked versions (exported with hashes,
  installed before the project itself, which then brings nothing new). ``poetry.lock`` is not
  read; the build log says so.

Paths in requirement files (local packages, ``-r``/``-c`` files, ``file:`` URLs) must stay inside
the crew's folder; editable installs are refused (the folder is not there at run time). The
digest covers the bytes of every file above and the contents of every local package, the Python,
the registry settings and the build recipe's version — and for package crews the whole source —
so a changed local package is rebuilt and an unchanged crew is not.
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from pathlib import Path

import msgspec

from ._base import BuildFailed

#: Bump when what a build does changes (its output would differ for the same inputs).
RECIPE_VERSION = "3"  # 3: builds ignore uv settings in the crew's folder (UV_NO_CONFIG)
REQUIREMENTS = "requirements.txt"
_FILE_OPTIONS = ("-r", "--requirement", "-c", "--constraint")
_PATH_OPTIONS = ("-f", "--find-links")
_EDITABLE = ("-e", "--editable")
#: Requirement files one crew may chain (``-r``), at most.
MAX_REQUIREMENT_FILES = 100


class Inputs(msgspec.Struct, kw_only=True):
    requirement_files: list[str]  # relative to the crew folder, in the order they are read
    local_paths: list[str]  # folders/files of local packages, relative to the crew folder
    project: bool  # install the crew folder itself as a package
    uv_lock: bool
    notes: list[str]  # said in the build log


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Requirement lines joined at backslash continuations, comments removed (for checking only)."""
    out: list[tuple[int, str]] = []
    buf, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", raw)
        if not buf:
            start = number
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        if buf.strip():
            out.append((start, buf.strip()))
        buf = ""
    if buf.strip():
        out.append((start, buf.strip()))
    return out


def check_inside(root: Path, base: Path, ref: str, where: str) -> str:
    """``ref`` (relative to ``base``) as a path relative to ``root``; refused when it leaves it."""
    if ref.startswith("file:"):
        ref = re.sub(r"^file:(//)?", "", ref)
    if ref.startswith(("/", "~")):
        raise BuildFailed(f"{where}: {ref!r} is an absolute path; use a path inside the crew's folder")
    target = Path(os.path.normpath(base / ref))
    if not target.is_relative_to(root):
        raise BuildFailed(f"{where}: {ref!r} points outside the crew's folder")
    if target.is_symlink():
        raise BuildFailed(f"{where}: {ref!r} is a link")
    return target.relative_to(root).as_posix() or "."


def _is_path(token: str) -> bool:
    return token.startswith((".", "/", "~", "file:")) or token.startswith("..")


def _scan(root: Path, rel: str, inputs: Inputs, seen: set[str]) -> None:
    if rel in seen:
        return
    seen.add(rel)
    if len(seen) > MAX_REQUIREMENT_FILES:
        raise BuildFailed(f"more than {MAX_REQUIREMENT_FILES} requirement files are chained with -r")
    path = root / rel
    if not path.is_file():
        raise BuildFailed(f"requirement file {rel!r} does not exist in the crew's folder")
    inputs.requirement_files.append(rel)
    for number, line in _logical_lines(path.read_text(errors="replace")):
        where = f"{rel} line {number}"
        tokens = line.split()
        first = tokens[0]
        option, _, attached = first.partition("=")
        if not first.startswith("--") and first[:2] in (*_FILE_OPTIONS, *_PATH_OPTIONS, *_EDITABLE):
            option, attached = first[:2], first[2:].lstrip("=")  # pip reads -rfile as -r file
        if option in _EDITABLE:
            raise BuildFailed(f"{where}: editable installs ({option}) cannot be deployed; drop the {option}")
        if option in _FILE_OPTIONS or option in _PATH_OPTIONS:
            value = attached or (tokens[1] if len(tokens) > 1 else "")
            if option in _PATH_OPTIONS and not _is_path(value):
                continue  # a URL: the registry is the build's business
            target = check_inside(root, path.parent, value, where)
            if option in _FILE_OPTIONS:
                _scan(root, target, inputs, seen)
            else:
                inputs.local_paths.append(target)
            continue
        if first.startswith("-"):
            continue  # --hash, --index-url …: kept as written
        # "name @ file:///…" or a bare path: a local package
        ref = line.split("@", 1)[1].split()[0] if " @ " in line or "@file:" in line else first
        if _is_path(ref):
            inputs.local_paths.append(check_inside(root, path.parent, ref.split(";")[0], where))


def read(root: Path) -> Inputs:
    inputs = Inputs(requirement_files=[], local_paths=[], project=False, uv_lock=False, notes=[])
    root = root.resolve()
    if (root / REQUIREMENTS).is_file():
        _scan(root, REQUIREMENTS, inputs, set())
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        try:
            doc = tomllib.loads(pyproject.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise BuildFailed(f"pyproject.toml is not valid TOML: {exc}") from None
        except RecursionError:
            raise BuildFailed("pyproject.toml is nested too deeply to read") from None
        project = doc.get("project")
        if isinstance(project, dict) and isinstance(doc.get("build-system"), dict):
            inputs.project = True
            inputs.uv_lock = (root / "uv.lock").is_file()
            inputs.notes.append("installing the crew's package (pyproject.toml declares a build backend)")
            if inputs.uv_lock:
                inputs.notes.append("installing the versions locked in uv.lock")
        elif isinstance(project, dict) and not inputs.requirement_files:
            deps = project.get("dependencies", [])
            if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
                raise BuildFailed("pyproject.toml: [project] dependencies must be an array of strings")
        if (root / "poetry.lock").is_file():
            inputs.notes.append("poetry.lock is not read: versions come from the requirement files")
    return inputs


def dependencies_of(root: Path) -> list[str]:
    """``[project] dependencies`` of a pyproject.toml without a build backend."""
    try:
        doc = tomllib.loads((root / "pyproject.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError):
        return []
    deps = doc.get("project", {}).get("dependencies", [])
    return [str(d) for d in deps] if isinstance(deps, list) else []


def hash_tree(h: hashlib._Hash, root: Path, rel: str) -> None:
    top = root / rel
    paths = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
    for path in paths:
        if "__pycache__" in path.parts or path.is_symlink():
            continue
        name = path.relative_to(root).as_posix()
        data = path.read_bytes()
        h.update(f"{name}\0{os.access(path, os.X_OK)}\0{len(data)}\0".encode() + data)


def digest(root: Path, inputs: Inputs, *, source_digest: str, parts: list[str]) -> str:
    """Names the environment: equal digests, equal environments (see the module note)."""
    h = hashlib.sha256(f"env:{RECIPE_VERSION}\n".encode())
    for part in parts:
        h.update(part.encode() + b"\n")
    if inputs.project:
        h.update(f"source:{source_digest}\n".encode())  # the package is the crew itself
    else:
        for rel in inputs.requirement_files:
            hash_tree(h, root, rel)
        for rel in sorted(set(inputs.local_paths)):
            hash_tree(h, root, rel)
        if not inputs.requirement_files:
            h.update("\n".join(dependencies_of(root)).encode())
    return h.hexdigest()[:32]
