"""Which files of a crew folder are left out of its archive: gitignore-style patterns.

Three sources, in gitignore's own syntax and precedence (``pathspec``'s ``GitIgnoreSpec``):
the platform's :data:`ALWAYS_EXCLUDED` (never wanted in a deployment: VCS data, virtual
environments, caches, ``.env`` and ``.env.*`` but for templates), the crew's ``[build]
exclude``, and every ``.gitignore`` in the folder, each relative to its own directory. A deeper
``.gitignore`` overrides a shallower one, and ``.gitignore`` files override ``[build] exclude``
and the defaults, as in git; a pattern that starts with ``!`` re-includes. As in git, nothing
inside an excluded directory can be re-included: the walk does not enter it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import pathspec

__all__ = ["ALWAYS_EXCLUDED", "Exclusions"]

ALWAYS_EXCLUDED = (
    ".git/",
    ".hg/",
    ".venv/",
    "venv/",
    "__pycache__/",
    "*.pyc",
    ".env",
    # Local variants hold secrets as .env does (.env.local, .env.production, …); templates
    # without values stay.
    ".env.*",
    "!.env.example",
    "!.env.sample",
    "!.env.template",
    ".crewyard/",
    "node_modules/",
    ".mypy_cache/",
    ".ruff_cache/",
    ".pytest_cache/",
)


def _spec(lines: Iterable[str]) -> pathspec.GitIgnoreSpec:
    return pathspec.GitIgnoreSpec.from_lines(lines)


class Exclusions:
    """Decides for paths relative to the crew folder, reading ``.gitignore`` files as it goes."""

    def __init__(self, root: Path, patterns: Iterable[str] = ()) -> None:
        self.root = root
        self._base = _spec([*ALWAYS_EXCLUDED, *patterns])
        #: Each directory's own .gitignore (None: it has none), keyed by its path ("" = the root).
        self._ignores: dict[str, pathspec.GitIgnoreSpec | None] = {}

    def _gitignore(self, directory: str) -> pathspec.GitIgnoreSpec | None:
        if directory not in self._ignores:
            path = self.root / directory / ".gitignore"
            spec = None
            if path.is_file() and not path.is_symlink():
                try:
                    spec = _spec(path.read_text(encoding="utf-8", errors="replace").splitlines())
                except OSError:
                    spec = None
            self._ignores[directory] = spec
        return self._ignores[directory]

    def excluded(self, rel: str, *, is_dir: bool = False) -> bool:
        """Whether ``rel`` (POSIX, relative to the root) is left out."""
        path = PurePosixPath(rel)
        ancestors = [str(p) if str(p) != "." else "" for p in reversed(path.parents)]
        # The deepest .gitignore that has an opinion decides, then the shallower ones, then
        # [build] exclude and the defaults.
        for directory in reversed(ancestors):
            spec = self._gitignore(directory)
            if spec is None:
                continue
            sub = path.relative_to(directory).as_posix() if directory else rel
            decided = spec.check_file(sub + "/" if is_dir else sub).include
            if decided is not None:
                return decided
        decided = self._base.check_file(rel + "/" if is_dir else rel).include
        return bool(decided)
