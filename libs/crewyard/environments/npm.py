"""What a JavaScript crew's environment is made from, the digest that names it, and the recipe.

- ``package.json`` (required): the crew's dependencies, installed with npm.
- ``package-lock.json`` or ``npm-shrinkwrap.json``: the locked versions, installed with ``npm ci``
  (which fails when the lock does not match ``package.json``: a lock is honoured or the build says
  why). Without one, ``npm install`` resolves the versions at build time (said in the build log).
- ``pnpm-lock.yaml``, ``yarn.lock``, ``bun.lock(b)`` without an npm lock: the build fails saying
  how to make an npm lock — installing with npm would silently ignore the versions they lock.
- ``.npmrc`` in the crew's folder: read by npm as the project's settings, and part of the digest.
- ``file:`` dependencies (local packages) must stay inside the crew's folder; their contents
  (without ``node_modules``) are part of the digest. ``link:`` dependencies and npm workspaces
  are refused.
- install scripts of the crew's own package (``preinstall``, ``postinstall``, ``prepare`` …) or a
  ``binding.gyp``: npm runs them from the crew's folder, so the whole folder (without
  ``node_modules``) is the build's input and in the digest (said in the build log).

Dev dependencies are installed too: TypeScript projects keep ``tsconfig`` bases and type-only
packages there, and crews run as their authors run them. The digest covers the bytes of the files
above, the local packages, the build recipe, Node's major version, the registry settings and the
runtime's own lock (``crewyard_runtime/node``: tsx) — not the crew's code — so a code-only redeploy
reuses the installed dependencies. Environments are shared by digest between projects, so the
build folder holds only what the digest covers (:func:`build_files`): never the crew's other
files, never a ``node_modules`` it uploaded (npm would keep the packages it finds there).

The environment (the same layout on every backend, at ``env_path``)::

    node_modules/            the crew's dependencies
    runtime/node_modules/    the runtime's (tsx, to run TypeScript without a compile step)
    package.json, package-lock.json   copies, for reference
"""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path

import msgspec

import crewyard_runtime

from . import inputs as py_inputs
from ._base import BuildFailed
from .registry import Registry

#: Bump when what a build does changes (its output would differ for the same inputs).
RECIPE_VERSION = "2"  # 2: a build gets only the files its digest covers (no uploaded node_modules)
RUNTIME_PACKAGE = Path(crewyard_runtime.__file__).parent / "node"
NPM_LOCKS = ("package-lock.json", "npm-shrinkwrap.json")
OTHER_LOCKS = {"pnpm-lock.yaml": "pnpm", "yarn.lock": "yarn", "bun.lockb": "bun", "bun.lock": "bun"}
_DEPENDENCY_KEYS = ("dependencies", "devDependencies", "optionalDependencies")
#: What npm runs of the crew's own package when it installs (from the crew's folder).
_INSTALL_SCRIPTS = (
    "preinstall",
    "install",
    "postinstall",
    "prepublish",
    "preprepare",
    "prepare",
    "postprepare",
)
#: The crew's package.json is read (and parsed) on the builder: a bound, as for pyproject.toml
#: (a JSON list of a hundred million empty objects takes gigabytes once parsed).
MAX_PACKAGE_JSON_BYTES = 1 << 20
#: Never an input: npm keeps the packages it finds there, whatever their bytes.
SKIP = frozenset({"node_modules"})
_NPM_FLAGS = ["--no-audit", "--no-fund", "--no-update-notifier", "--loglevel=warn", "--include=dev"]


class NodeInputs(msgspec.Struct, kw_only=True):
    lock: str | None  # the npm lock file, relative to the crew folder
    local_paths: list[str]  # local packages (file: dependencies), relative to the crew folder
    npmrc: bool
    notes: list[str]  # said in the build log
    #: The crew's package has install scripts: its whole folder is the build's input.
    whole: bool = False


def read(root: Path) -> NodeInputs:
    root = root.resolve()
    manifest_path = root / "package.json"
    if not manifest_path.is_file():
        raise BuildFailed("a langgraph-js crew needs a package.json naming its dependencies in its folder")
    try:
        manifest = json.loads(py_inputs.read_bounded(manifest_path, MAX_PACKAGE_JSON_BYTES, "package.json"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BuildFailed(f"package.json is not valid JSON: {exc}") from None
    except RecursionError:
        raise BuildFailed("package.json is nested too deeply to read") from None
    if not isinstance(manifest, dict):
        raise BuildFailed("package.json must be a JSON object")
    if manifest.get("workspaces"):
        raise BuildFailed(
            "npm workspaces are not supported: deploy the workspace package that holds the graph"
        )
    found = NodeInputs(lock=None, local_paths=[], npmrc=(root / ".npmrc").is_file(), notes=[])
    found.lock = next((name for name in NPM_LOCKS if (root / name).is_file()), None)
    others = [name for name in OTHER_LOCKS if (root / name).is_file()]
    if found.lock is None and others:
        tool = OTHER_LOCKS[others[0]]
        raise BuildFailed(
            f"{others[0]} locks this crew's versions for {tool}, and crewyard installs with npm, which"
            " cannot read it: add a package-lock.json (`npm install --package-lock-only`)"
            f" or remove {others[0]}"
        )
    if found.lock:
        found.notes.append(f"installing the versions locked in {found.lock} (npm ci)")
    else:
        found.notes.append(
            "no package-lock.json: versions are resolved now (commit a lock file for repeatable builds)"
        )
    for name in others:
        found.notes.append(f"{name} is not read: versions come from {found.lock}")
    scripts = manifest.get("scripts")
    hooks = [name for name in _INSTALL_SCRIPTS if isinstance(scripts, dict) and name in scripts]
    if hooks or (root / "binding.gyp").is_file():
        found.whole = True
        what = f"package.json has install scripts ({', '.join(hooks)})" if hooks else "binding.gyp"
        found.notes.append(f"{what}: the whole crew is the environment's input (a code change rebuilds it)")
    for key in _DEPENDENCY_KEYS:
        deps = manifest.get(key) or {}
        if not isinstance(deps, dict):
            raise BuildFailed(f"package.json: '{key}' must be an object")
        for name, spec in deps.items():
            where = f"package.json {key}[{name!r}]"  # the crew's text: quoted, never raw
            if not isinstance(spec, str):
                raise BuildFailed(f"{where} must be a version string")
            if spec.startswith("link:"):
                raise BuildFailed(f"{where}: link: dependencies cannot be deployed; use file:")
            ref = spec.removeprefix("file:") if spec.startswith("file:") else spec
            if spec.startswith("file:") or ref.startswith(("./", "../", "/", "~")):
                found.local_paths.append(py_inputs.check_inside(root, root, ref, where))
    return found


def digest(root: Path, found: NodeInputs, *, parts: list[str]) -> str:
    """Names the environment: equal digests, equal environments (see the module note)."""
    h = hashlib.sha256(f"node-env:{RECIPE_VERSION}\n".encode())
    for part in parts:
        h.update(part.encode() + b"\n")
    for name in ("package.json", found.lock, ".npmrc" if found.npmrc else None):
        if name:
            py_inputs.hash_tree(h, root, name)
    for rel in sorted(set(found.local_paths)):
        py_inputs.hash_tree(h, root, rel, SKIP)
    if found.whole:
        h.update(b"whole\n")
        py_inputs.hash_tree(h, root, ".", SKIP)
    for name in ("package.json", "package-lock.json"):
        h.update(b"runtime:" + (RUNTIME_PACKAGE / name).read_bytes())
    return h.hexdigest()[:32]


def build_files(root: Path, found: NodeInputs) -> list[str]:
    """What of the crew's folder its build gets: exactly the files the digest covers."""
    if found.whole:
        return py_inputs.files_of(root, ["."], SKIP)
    named = [name for name in ("package.json", found.lock, ".npmrc" if found.npmrc else None) if name]
    return py_inputs.files_of(root, [*named, *found.local_paths], SKIP)


def copy_runtime_package(env_dir: Path) -> None:
    """Put the runtime's package.json and lock where the recipe installs them (``env/runtime``)."""
    target = env_dir / "runtime"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        (target / name).write_bytes((RUNTIME_PACKAGE / name).read_bytes())


def build_script(found: NodeInputs, env_path: str, npm: list[str]) -> str:
    """The shell script a build sandbox (or build container) runs, from the crew's copied folder.

    ``npm`` is how to call npm there (``["node", "/usr/lib/node_modules/npm/bin/npm-cli.js"]``).
    The runtime's package (``env/runtime``) must already hold its package.json and lock.
    """
    install = [*npm, "ci" if found.lock else "install", *_NPM_FLAGS]
    if not found.lock:
        install.append("--no-package-lock")  # nothing is written back into the crew's copy
    lines = [
        "set -eu",
        "rm -rf node_modules",  # never one of the crew's (the build folder has none: see build_files)
        shlex.join(install),
        "mkdir -p node_modules",  # a crew without dependencies has none
        shlex.join(["mv", "node_modules", f"{env_path}/node_modules"]),
        shlex.join(["cp", "package.json", f"{env_path}/package.json"]),
    ]
    if found.lock:
        lines.append(shlex.join(["cp", found.lock, f"{env_path}/{found.lock}"]))
    lines.append(shlex.join(["cd", f"{env_path}/runtime"]))
    lines.append(shlex.join([*npm, "ci", *_NPM_FLAGS]))
    return "\n".join(lines) + "\n"


def registry_args(reg: Registry) -> list[str]:
    """What changes which packages an npm build resolves (the registry and its scopes)."""
    return [f"{k}={v}" for k, v in sorted(reg.env.items()) if k.lower().startswith("npm_config_")]
