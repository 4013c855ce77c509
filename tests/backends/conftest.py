"""Fixtures for the execution and build backend tests, against the real things.

- ``docker_host``: runs ``scripts/containers.sh`` once per session (idempotent: starts Podman's
  Docker-API service when it does not answer, imports the base image when missing — about a
  minute the very first time on a machine, instant afterwards) and yields ``unix://…``.
  ``CREWYARD_TEST_DOCKER_HOST`` points the tests at another engine instead.
- ``crew_source``: the crew folder next to this file (one entrypoint per situation), copied;
  ``crew_venv`` and ``crew_image`` are what the venv and docker builders make of it.
- ``runs``: parametrised over backends; makes run specs and executes them to an :class:`Outcome`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from backend_helpers import TEST_RUNNER_ID, Runs, folder_digest, make_runs

import crewyard_runtime
from crewyard.builder.backends.docker import DockerBuilder
from crewyard.core.crewfile import CrewConfig
from crewyard.environments import BuildRequest, VenvBuilder
from crewyard.runner.backends import DockerBackend

REPO = Path(__file__).resolve().parents[2]
CREW_DIR = Path(__file__).resolve().parent / "crew"
BASE_IMAGE = os.environ.get("CREWYARD_TEST_BASE_IMAGE", "crewyard/base:bookworm")


async def _quiet(line: str, stream: str) -> None:
    return None


@pytest.fixture(scope="session")
def crew_source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    src = tmp_path_factory.mktemp("crew") / "src"
    shutil.copytree(CREW_DIR, src, ignore=shutil.ignore_patterns("__pycache__"))
    return src, folder_digest(src)


@pytest.fixture(scope="session")
def runtime_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("runtime")
    folder.chmod(0o755)  # as the runner's own (a bwrap fork server reads it as the sandbox's user)
    shutil.copytree(
        Path(crewyard_runtime.__file__).parent,
        folder / "crewyard_runtime",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return folder


def _request(source: tuple[Path, str]) -> BuildRequest:
    return BuildRequest(
        deployment_id="dep_backends",
        project="tests",
        source_dir=source[0],
        source_digest=source[1],
        config=CrewConfig(entrypoint="crew:hello"),
    )


@pytest.fixture(scope="session")
def build_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("build-cache")


@pytest.fixture(scope="session")
def crew_venv(crew_source: tuple[Path, str], build_cache: Path) -> Path:
    result = asyncio.run(VenvBuilder(build_cache).build(_request(crew_source), _quiet))
    assert result.venv_dir is not None
    return result.venv_dir


@pytest.fixture(scope="session")
def crew_image(docker_host: str, base_image: str, crew_source: tuple[Path, str], build_cache: Path) -> str:
    """The crew's image; content-addressed, so later sessions reuse it while the crew is unchanged."""
    builder = DockerBuilder(docker_host, base_image, build_cache)
    result = asyncio.run(builder.build(_request(crew_source), _quiet))
    assert result.image is not None
    return result.image


NODE_CREW_DIR = Path(__file__).resolve().parent / "node_crew"
NODE_BASE_IMAGE = os.environ.get("CREWYARD_TEST_NODE_BASE_IMAGE", "crewyard/node:bookworm")


@pytest.fixture(scope="session")
def node_crew_source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The JavaScript crew next to this file (no dependencies: the runtime's tsx only), copied."""
    src = tmp_path_factory.mktemp("node-crew") / "src"
    shutil.copytree(NODE_CREW_DIR, src, ignore=shutil.ignore_patterns("node_modules"))
    return src, folder_digest(src)


def _node_request(source: tuple[Path, str]) -> BuildRequest:
    return BuildRequest(
        deployment_id="dep_backends_node",
        project="tests",
        source_dir=source[0],
        source_digest=source[1],
        config=CrewConfig(entrypoint="./crew.ts:artifacts", framework="langgraph-js"),
    )


@pytest.fixture(scope="session")
def node_crew_venv(node_crew_source: tuple[Path, str], build_cache: Path) -> Path:
    result = asyncio.run(VenvBuilder(build_cache).build(_node_request(node_crew_source), _quiet))
    assert result.venv_dir is not None
    return result.venv_dir


@pytest.fixture(scope="session")
def node_crew_image(docker_host: str, node_crew_source: tuple[Path, str], build_cache: Path) -> str:
    builder = DockerBuilder(docker_host, None, build_cache, node_base_image=NODE_BASE_IMAGE)
    result = asyncio.run(builder.build(_node_request(node_crew_source), _quiet))
    assert result.image is not None
    return result.image


@pytest.fixture(scope="session")
def docker_backend(docker_host: str) -> Iterator[DockerBackend]:
    backend = DockerBackend(docker_host)
    yield backend
    # Whatever a failed test of this session left behind (never another session's containers).
    asyncio.run(backend.cleanup_orphans(TEST_RUNNER_ID))


@pytest.fixture(scope="session")
def docker_archive_backend(docker_host: str) -> Iterator[DockerBackend]:
    """As an engine on another machine is used: artifacts copied out with ``get_archive``."""
    backend = DockerBackend(docker_host)
    backend.volumes_here = False
    yield backend
    asyncio.run(backend.cleanup_orphans(TEST_RUNNER_ID))


@pytest.fixture(params=["process", "forked", "bwrap", "bwrap-forked", "docker"])
def runs(request: pytest.FixtureRequest, tmp_path: Path) -> Runs:
    """Every backend, for the contract every one of them must keep."""
    return make_runs(request, request.param, tmp_path)


@pytest.fixture(params=["bwrap", "bwrap-forked", "docker"])
def isolated_runs(request: pytest.FixtureRequest, tmp_path: Path) -> Runs:
    """The isolating backends, for hostile crews."""
    return make_runs(request, request.param, tmp_path)


@pytest.fixture
def docker_runs(request: pytest.FixtureRequest, tmp_path: Path) -> Runs:
    return make_runs(request, "docker", tmp_path)


@pytest.fixture
def docker_archive_runs(request: pytest.FixtureRequest, tmp_path: Path) -> Runs:
    return make_runs(request, "docker-archive", tmp_path)


@pytest.fixture
def bwrap_runs(request: pytest.FixtureRequest, tmp_path: Path) -> Runs:
    return make_runs(request, "bwrap", tmp_path)
