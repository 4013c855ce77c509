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

Paths in requirement files must stay inside the crew's folder: local packages (``./pkg``,
``vendor/x.whl``, ``x.tar.gz``, ``name @ ./x.whl`` and ``name@file:…`` with any spacing),
``-r``/``-c`` files, and the values of ``--find-links``/``--index-url``/``--extra-index-url``
without a URL scheme. Editable installs are refused (the folder is not there at run time). A
requirement line read neither as a name nor as a URL or path makes the whole source the input.

The digest covers the bytes of every file above and the contents of every local package, the
Python, the registry settings and the build recipe's version — and for package crews the whole
source — so a changed local package is rebuilt and an unchanged crew is not. Environments are
shared by digest between projects, so a build gets **only what its digest covers**
(:func:`build_files`, copied by :func:`copy_build_folder`): the files above for a crew that is not
a package, the whole folder for one that is. A file the digest leaves out (a ``compileall.py`` in
the crew's root, a wheel named in a way not read here) is then simply not there to be used.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tomllib
from collections.abc import Iterable
from pathlib import Path

import msgspec

from ._base import BuildFailed

#: Bump when what a build does changes (its output would differ for the same inputs).
# 3: builds ignore uv settings in the crew's folder (UV_NO_CONFIG); 4: a build gets only the files
# its digest covers, compileall runs isolated (environments built before may hold a crew's code).
RECIPE_VERSION = "4"
REQUIREMENTS = "requirements.txt"
_FILE_OPTIONS = ("-r", "--requirement", "-c", "--constraint")
#: Options whose value is a URL, or a folder of the crew's when it has no scheme.
_PATH_OPTIONS = ("-f", "--find-links", "-i", "--index-url", "--extra-index-url")
_EDITABLE = ("-e", "--editable")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_ARCHIVES = (".whl", ".zip", ".tar.gz", ".tgz", ".tar.bz2", ".tbz", ".tar.xz", ".txz", ".tar")
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?\s*(?:\[[^\]]*\])?"
#: ``name[extras] @ url`` with any spacing (uv reads ``x@./x.whl`` and ``x\t@\tfile:x.whl`` too).
_DIRECT = re.compile(rf"^{_NAME}\s*@\s*(\S+)")
#: A requirement by name only (``name[extras]`` then version and markers, no path or URL), in
#: two linear steps: one pattern ``^name\s*[^@/\\:$]*$`` backtracks over every split of a long
#: name and the rest (a 40,000-character line took 20 s, on the event loop's builder).
_NAME_EXTRAS = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?(\s*\[[^\]]*\])?")
_NOT_BY_NAME = re.compile(r"[@/\\:$]")
#: Requirement files one crew may chain (``-r``), at most.
MAX_REQUIREMENT_FILES = 100
#: Bounds on what is read here (a build error past them): a requirement file, a logical
#: requirement line (hash lines joined at ``\``: a few hundred hashes fit) and pyproject.toml.
MAX_REQUIREMENT_FILE_BYTES = 4 << 20
MAX_REQUIREMENT_LINE = 64 << 10
MAX_PYPROJECT_BYTES = 1 << 20


class Inputs(msgspec.Struct, kw_only=True):
    requirement_files: list[str]  # relative to the crew folder, in the order they are read
    local_paths: list[str]  # folders/files of local packages, relative to the crew folder
    project: bool  # install the crew folder itself as a package
    uv_lock: bool
    notes: list[str]  # said in the build log
    #: A requirement line was not understood: the whole source is the build's input (as a package's).
    whole: bool = False


def read_bounded(path: Path, most: int, what: str, errors: str = "strict") -> str:
    """The text of ``path``, a crew's file read on the builder: BuildFailed past ``most`` bytes."""
    with path.open("rb") as fh:
        data = fh.read(most + 1)
    if len(data) > most:
        raise BuildFailed(f"{what} is larger than {most >> 10} KiB; builds read no bigger one")
    return data.decode(errors=errors)


def _logical_lines(text: str, where: str = REQUIREMENTS) -> list[tuple[int, str]]:
    """Requirement lines joined at backslash continuations, comments removed (for checking only);
    BuildFailed for one longer than MAX_REQUIREMENT_LINE."""
    out: list[tuple[int, str]] = []
    buf, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        if len(raw) + len(buf) > MAX_REQUIREMENT_LINE:
            raise BuildFailed(
                f"{where} line {start if buf else number} is longer than {MAX_REQUIREMENT_LINE} characters"
            )
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
        if re.match(r"^file://[^/]", ref):
            raise BuildFailed(f"{where}: {ref!r} names another machine; use a path inside the crew's folder")
        ref = re.sub(r"^file:(//)?", "", ref)
    if ref.startswith(("/", "~")):
        raise BuildFailed(f"{where}: {ref!r} is an absolute path; use a path inside the crew's folder")
    target = Path(os.path.normpath(base / ref))
    if not target.is_relative_to(root):
        raise BuildFailed(f"{where}: {ref!r} points outside the crew's folder")
    if target.is_symlink() or not Path(os.path.realpath(target)).is_relative_to(root):
        raise BuildFailed(f"{where}: {ref!r} is a link")
    return target.relative_to(root).as_posix() or "."


def _is_path(token: str) -> bool:
    """A local path, as uv reads one: relative or absolute, ``file:``, or an archive's name."""
    if token.startswith((".", "/", "~", "file:")):
        return True
    if _SCHEME.match(token):
        return False  # https:, git+ssh: …: the registry settings' and the network's business
    bare = token.split("#", 1)[0].split(";", 1)[0]
    return "/" in bare or "\\" in bare or bare.lower().endswith(_ARCHIVES)


def _requirement(line: str) -> tuple[str | None, bool]:
    """The local path a requirement line names (or None), and whether the line was understood."""
    # Without --hash …; spaces made single first: \s+ over a long run of them is quadratic.
    spec = " ".join(re.split(r" --?[A-Za-z]", " " + " ".join(line.split()), maxsplit=1)[0].split())
    direct = _DIRECT.match(spec)
    ref = direct.group(1) if direct else (spec.split() or [""])[0]
    if _is_path(ref):
        return ref.split(";")[0].split("#")[0], True
    if direct or _SCHEME.match(ref):
        return None, True  # a URL
    return None, _by_name(spec)


def _by_name(spec: str) -> bool:
    """``spec`` matches ``^name\\s*(\\[extras\\])?\\s*[^@/\\\\:$]*$``: only the extras may hold those
    characters, and they can only follow the longest name (a shorter one is followed by a name's
    character), so one forward look settles it."""
    named = _NAME_EXTRAS.match(spec)
    if named is None:
        return False
    if named.group(1) and not _NOT_BY_NAME.search(spec, named.end()):
        return True
    return not _NOT_BY_NAME.search(spec)


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
    text = read_bounded(path, MAX_REQUIREMENT_FILE_BYTES, f"requirement file {rel!r}", "replace")
    for number, line in _logical_lines(text, rel):
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
            if option in _PATH_OPTIONS and _SCHEME.match(value) and not value.startswith("file:"):
                continue  # a URL: the registry is the build's business
            target = check_inside(root, path.parent, value, where)
            if option in _FILE_OPTIONS:
                _scan(root, target, inputs, seen)
            else:
                inputs.local_paths.append(target)
            continue
        if first.startswith("-"):
            continue  # --hash, --index-url …: kept as written
        # "name @ ./x.whl", "x@file:x.whl", "vendor/x.whl" …: a local package
        ref, understood = _requirement(line)
        if ref is not None:
            inputs.local_paths.append(check_inside(root, path.parent, ref, where))
        elif not understood:
            inputs.whole = True
            inputs.notes.append(
                f"{where} is not read as a name or a path: the whole crew is the build's input"
            )


def read(root: Path) -> Inputs:
    inputs = Inputs(requirement_files=[], local_paths=[], project=False, uv_lock=False, notes=[])
    root = root.resolve()
    if (root / REQUIREMENTS).is_file():
        _scan(root, REQUIREMENTS, inputs, set())
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        try:
            doc = tomllib.loads(read_bounded(pyproject, MAX_PYPROJECT_BYTES, "pyproject.toml"))
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
    """``[project] dependencies`` of a pyproject.toml without a build backend (blocking: a thread's)."""
    try:
        doc = tomllib.loads(read_bounded(root / "pyproject.toml", MAX_PYPROJECT_BYTES, "pyproject.toml"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError):
        return []
    deps = doc.get("project", {}).get("dependencies", [])
    return [str(d) for d in deps] if isinstance(deps, list) else []


def tree_files(root: Path, rel: str, skip: frozenset[str] = frozenset()) -> list[str]:
    """The files of ``rel`` (a file or a folder) an environment is made from, relative to ``root``:
    no links, no ``__pycache__`` and no folder named in ``skip``."""
    root = root.resolve()
    top = root / rel
    paths = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
    return [
        path.relative_to(root).as_posix()
        for path in paths
        if not path.is_symlink()
        and "__pycache__" not in path.parts
        and not skip & set(path.relative_to(root).parts)
        and Path(os.path.realpath(path)).is_relative_to(root)
    ]


def _executable(path: Path) -> bool:
    return bool(path.stat().st_mode & 0o111)


def hash_tree(h: hashlib._Hash, root: Path, rel: str, skip: frozenset[str] = frozenset()) -> None:
    for name in tree_files(root, rel, skip):
        path = root.resolve() / name
        data = path.read_bytes()
        h.update(f"{name}\0{_executable(path)}\0{len(data)}\0".encode() + data)


def digest(root: Path, inputs: Inputs, *, source_digest: str, parts: list[str]) -> str:
    """Names the environment: equal digests, equal environments (see the module note)."""
    h = hashlib.sha256(f"env:{RECIPE_VERSION}\n".encode())
    for part in parts:
        h.update(part.encode() + b"\n")
    if inputs.project or inputs.whole:
        h.update(f"source:{source_digest}\n".encode())  # the package is the crew itself
    else:
        for rel in inputs.requirement_files:
            hash_tree(h, root, rel)
        for rel in sorted(set(inputs.local_paths)):
            hash_tree(h, root, rel)
        if not inputs.requirement_files:
            h.update("\n".join(dependencies_of(root)).encode())
    return h.hexdigest()[:32]


def build_files(root: Path, inputs: Inputs) -> list[str] | None:
    """What of the crew's folder its build gets: exactly the files the digest covers (None: all of
    it, for a package crew, whose digest is its source's). A build reads nothing else of the crew:
    another project with the same digest gets what this build made."""
    if inputs.project or inputs.whole:
        return None
    return files_of(root, [*inputs.requirement_files, *inputs.local_paths])


def files_of(root: Path, rels: Iterable[str], skip: frozenset[str] = frozenset()) -> list[str]:
    return sorted({name for rel in rels for name in tree_files(root, rel, skip)})


def copy_build_folder(root: Path, dest: Path, files: list[str] | None) -> None:
    """The build folder ``dest``: ``files`` of ``root`` (see :func:`build_files`), or all of it."""
    if files is None:
        shutil.copytree(root, dest, symlinks=True)
        return
    dest.mkdir(parents=True)
    for name in files:
        source, target = root.resolve() / name, dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target, follow_symlinks=False)
        target.chmod(0o755 if _executable(source) else 0o644)
