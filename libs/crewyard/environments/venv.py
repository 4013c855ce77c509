"""The ``venv`` build backend: a virtual environment per dependency set, shared and cached.

Dependencies come from ``requirements.txt`` or ``pyproject.toml``'s ``[project] dependencies``.
The environment lives in ``<cache>/envs/<digest>``, created under a temporary name and renamed
when complete, so a crashed or concurrent build never leaves a half environment behind. uv is
used when installed (fast, links from its cache), pip otherwise.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import sys
import tomllib
from pathlib import Path

from ._base import BuildFailed, BuildRequest, BuildResult, LogSink

RUNTIME_VERSION = "1"


def requirements_of(source_dir: Path) -> list[str]:
    req = source_dir / "requirements.txt"
    if req.is_file():
        lines = [ln.split("#", 1)[0].strip() for ln in req.read_text().splitlines()]
        return sorted(ln for ln in lines if ln)
    pyproject = source_dir / "pyproject.toml"
    if pyproject.is_file():
        try:
            doc = tomllib.loads(pyproject.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise BuildFailed(f"pyproject.toml is not valid TOML: {exc}") from None
        deps = doc.get("project", {}).get("dependencies", [])
        if not isinstance(deps, list):
            raise BuildFailed("pyproject.toml: [project] dependencies must be an array")
        return sorted(str(d) for d in deps)
    return []


def base_python() -> str:
    """The interpreter new environments are made from (the base of ours, not our venv)."""
    return getattr(sys, "_base_executable", sys.executable)


def _beside_python(name: str) -> str | None:
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else None


def env_digest(requirements: list[str], python: str) -> str:
    h = hashlib.sha256()
    h.update(f"venv:{RUNTIME_VERSION}:{python}:{sys.version_info[:2]}\n".encode())
    h.update("\n".join(requirements).encode())
    return h.hexdigest()[:32]


async def _run(cmd: list[str], log: LogSink, env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env
    )
    assert proc.stdout is not None
    tail: list[str] = []
    async for raw in proc.stdout:
        line = raw.decode(errors="replace").rstrip()
        tail = [*tail[-40:], line]
        await log(line, "stdout")
    return await proc.wait(), tail


def _error_excerpt(tail: list[str]) -> str:
    """The installer's own words: from its first error line on (at most 12 lines)."""
    lines = [ln for ln in tail if ln.strip()]
    start = next(
        (i for i, ln in enumerate(lines) if "error" in ln.lower() or ln.lstrip().startswith("\u00d7")), 0
    )
    return "\n".join(lines[start : start + 12])


class VenvBuilder:
    name = "venv"

    def __init__(self, cache_dir: Path) -> None:
        self.envs = cache_dir / "envs"
        self._locks: dict[str, asyncio.Lock] = {}

    def path_for(self, digest: str) -> Path:
        return self.envs / digest

    async def build(self, request: BuildRequest, log: LogSink) -> BuildResult:
        requirements = requirements_of(request.source_dir)
        python = base_python()
        digest = env_digest(requirements, python)
        target = self.path_for(digest)
        lock = self._locks.setdefault(digest, asyncio.Lock())
        async with lock:
            if (target / ".complete").exists():
                await log(f"environment {digest[:12]} already built: reusing it", "stdout")
                return BuildResult(backend=self.name, env_digest=digest, cached=True, venv_dir=target)
            await self._create(target, python, requirements, log)
        return BuildResult(backend=self.name, env_digest=digest, cached=False, venv_dir=target)

    async def _create(self, target: Path, python: str, requirements: list[str], log: LogSink) -> None:
        self.envs.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        uv = shutil.which("uv") or _beside_python("uv")
        await log(
            f"creating environment with {'uv' if uv else 'venv'} ({len(requirements)} requirements)", "stdout"
        )
        if uv:
            cmd = [uv, "venv", "--quiet", "--python", python, str(tmp)]
        else:
            cmd = [python, "-m", "venv", *([] if requirements else ["--without-pip"]), str(tmp)]
        code, tail = await _run(cmd, log)
        if code != 0:
            raise BuildFailed("cannot create virtual environment:\n" + "\n".join(tail[-10:]))
        if requirements:
            req_file = tmp / "crew-requirements.txt"
            req_file.write_text("\n".join(requirements) + "\n")
            if uv:
                env = {**os.environ, "VIRTUAL_ENV": str(tmp)}
                cmd = [uv, "pip", "install", "--python", str(tmp / "bin" / "python"), "-r", str(req_file)]
            else:
                env = None
                cmd = [
                    str(tmp / "bin" / "python"),
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "-r",
                    str(req_file),
                ]
            code, tail = await _run(cmd, log, env)
            if code != 0:
                shutil.rmtree(tmp, ignore_errors=True)
                raise BuildFailed("dependencies failed to install:\n" + _error_excerpt(tail))
        (tmp / ".complete").write_text("ok\n")
        try:
            tmp.rename(target)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # another builder finished first
            if not (target / ".complete").exists():
                raise
