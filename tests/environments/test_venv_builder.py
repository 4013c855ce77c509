"""The venv builder against the real things: bwrap, uv, the package registry, a NATS object store.

An environment is built once in the build sandbox, published, and every "host" (a cache folder
of its own) uses exactly those bytes; an unchanged crew is not built again."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from crewyard.core.crewfile import CrewConfig
from crewyard.environments import (
    BuildFailed,
    BuildRequest,
    EnvironmentMissing,
    EnvironmentStore,
    VenvBuilder,
)
from crewyard.environments.sandbox import uv_binary
from crewyard.eventstore import EventStore
from crewyard.objects import NatsObjectStore, ObjectStore
from crewyard.testing.wheels import six_wheel

# Builds real environments in the build sandbox (root, network namespaces, package downloads).
pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]
SIX_HASH = "8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254"
SITE = "lib/python3.11/site-packages"
MYTOOL_PYPROJECT = """\
[project]
name = "mytool"
version = "0.1.0"

[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"
"""


def _output(cmd: list[str | Path], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    # env: nothing of ours by default (the probe), the registry settings for uv lock
    done = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, check=True, env=env or {}, timeout=300
    )
    return done.stdout


async def _quiet(line: str, stream: str) -> None:
    return None


@pytest.fixture
def objects(store: EventStore) -> ObjectStore:
    return NatsObjectStore(store.nc, store.settings.object_bucket)


def _request(root: Path, digest: str = "sha256-test", python: str | None = None) -> BuildRequest:
    return BuildRequest(deployment_id="dep_env", project="tests", source_dir=root, source_digest=digest,
                        config=CrewConfig(entrypoint="crew:main", python=python))  # fmt: skip


def _crew_with_local_package(root: Path, answer: int) -> Path:
    (root / "libs" / "mytool" / "mytool").mkdir(parents=True)
    (root / "libs" / "mytool" / "pyproject.toml").write_text(MYTOOL_PYPROJECT)
    (root / "libs" / "mytool" / "mytool" / "__init__.py").write_text(f"ANSWER = {answer}\n")
    (root / "requirements.txt").write_text(f"six==1.16.0 \\\n    --hash=sha256:{SIX_HASH}\n./libs/mytool\n")
    return root


async def test_an_environment_is_built_once_in_the_sandbox_and_used_as_built_elsewhere(
    tmp_path: Path, objects: ObjectStore
):
    root = _crew_with_local_package(tmp_path / "crew", 42)
    builder = VenvBuilder(tmp_path / "builder", objects)
    lines: list[str] = []

    async def log(line: str, stream: str) -> None:
        lines.append(line)

    built = await builder.build(_request(root), log)
    assert built.cached is False and built.env_sha256 and built.venv_dir is not None
    assert any("in a sandbox" in ln for ln in lines)
    env = built.venv_dir
    # Compiled at build time, with the path runs see (runs cannot write .pyc files).
    assert list((env / SITE / "__pycache__").glob("six.cpython-311.pyc"))
    assert list((env / SITE / "mytool" / "__pycache__").glob("__init__.cpython-311.pyc"))
    assert "/opt/crewyard/env" in (env / "bin" / "activate").read_text()
    # The local package was installed as a package, not linked to the crew's folder.
    assert (env / SITE / "mytool" / "__init__.py").read_text() == "ANSWER = 42\n"

    # Another host: unpacks exactly the published archive, once.
    elsewhere = EnvironmentStore(tmp_path / "runner", objects)
    there = await elsewhere.fetch(built.env_digest, built.env_sha256)
    assert there != env and (there / SITE / "mytool" / "__init__.py").read_text() == "ANSWER = 42\n"
    probe = [there / "bin" / "python", "-c", "import six, mytool; print(six.__version__, mytool.ANSWER)"]
    out = await asyncio.to_thread(_output, probe)
    assert out.split() == ["1.16.0", "42"]
    assert await elsewhere.fetch(built.env_digest, built.env_sha256) == there
    with pytest.raises(EnvironmentMissing):  # no archive of that sha256 was ever published
        await EnvironmentStore(tmp_path / "third", objects).fetch(built.env_digest, "0" * 64)

    # Unchanged: not built again, by this builder or a fresh one.
    lines.clear()
    again = await VenvBuilder(tmp_path / "builder2", objects).build(_request(root, "sha256-other"), log)
    assert (
        again.cached is True and again.env_digest == built.env_digest and again.env_sha256 == built.env_sha256
    )
    assert lines == [f"environment {built.env_digest[:12]} already built: reusing it"]

    # A changed local package is a new environment.
    (root / "libs" / "mytool" / "mytool" / "__init__.py").write_text("ANSWER = 43\n")
    changed = await builder.build(_request(root), _quiet)
    assert changed.cached is False and changed.env_digest != built.env_digest
    assert changed.venv_dir is not None
    assert (changed.venv_dir / SITE / "mytool" / "__init__.py").read_text() == "ANSWER = 43\n"


async def test_a_wrong_hash_in_a_requirement_file_fails_the_build(tmp_path: Path):
    root = tmp_path / "crew"
    root.mkdir()
    (root / "requirements.txt").write_text(f"six==1.16.0 --hash=sha256:{'0' * 64}\n")
    with pytest.raises(BuildFailed, match=r"(?i)hash"):
        await VenvBuilder(tmp_path / "cache").build(_request(root), _quiet)


async def test_a_crews_uv_settings_never_choose_the_packages_of_a_shared_environment(tmp_path: Path):
    # Two projects with the same requirements.txt share one environment (its digest): the first
    # to build, with a uv.toml pointing at wheels of its own, gave the other one its code.
    mallory, alice = tmp_path / "mallory", tmp_path / "alice"
    (mallory / "wheels").mkdir(parents=True)
    alice.mkdir()
    six_wheel(mallory / "wheels" / "six-1.16.0-py3-none-any.whl", "POISONED = True\n")
    (mallory / "uv.toml").write_text('[pip]\nno-index = true\nfind-links = ["wheels"]\n')
    for root in (mallory, alice):
        (root / "requirements.txt").write_text("six==1.16.0\n")
    builder = VenvBuilder(tmp_path / "cache")
    first = await builder.build(_request(mallory, "sha256-mallory"), _quiet)
    second = await builder.build(_request(alice, "sha256-alice"), _quiet)
    assert second.env_digest == first.env_digest and second.cached
    assert second.venv_dir is not None
    assert "POISONED" not in (second.venv_dir / SITE / "six.py").read_text()


async def test_a_package_crew_with_a_uv_lock_gets_the_locked_versions(tmp_path: Path):
    root = tmp_path / "pkg"
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "pkg" / "__init__.py").write_text("import six\nVERSION = six.__version__\n")
    pyproject = ('[project]\nname = "pkg"\nversion = "0.1.0"\nrequires-python = ">=3.11"\n'
                 'dependencies = ["six{}"]\n\n[build-system]\nrequires = ["hatchling"]\n'
                 'build-backend = "hatchling.build"\n')  # fmt: skip
    (root / "pyproject.toml").write_text(pyproject.format("==1.16.0"))
    await asyncio.to_thread(_output, [uv_binary(), "lock", "--quiet"], root, dict(os.environ))
    (root / "pyproject.toml").write_text(pyproject.format(""))  # unpinned now; the lock still says 1.16.0
    lines: list[str] = []

    async def log(line: str, stream: str) -> None:
        lines.append(line)

    built = await VenvBuilder(tmp_path / "cache").build(_request(root), log)
    assert built.venv_dir is not None
    assert any("uv.lock" in ln for ln in lines)
    # src/ layout: the package itself is installed (not editable) and imports as for its author.
    assert (built.venv_dir / SITE / "pkg" / "__init__.py").is_file()
    assert list((built.venv_dir / SITE).glob("six-1.16.0.dist-info"))


async def test_an_unavailable_python_fails_the_build_saying_what_is_available(tmp_path: Path):
    root = tmp_path / "crew"
    root.mkdir()
    with pytest.raises(BuildFailed, match=r"asks for Python 3\.99, .* available: 3\."):
        await VenvBuilder(tmp_path / "cache").build(_request(root, python="3.99"), _quiet)
