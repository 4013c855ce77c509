"""The docker build backend: an offline image build from a host-made wheelhouse, never built twice."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import docker
import pytest
from backend_helpers import folder_digest

from crewyard.builder.backends import BuildFailed, DockerBuilder, VenvBuilder, select_build_backend
from crewyard.core.crewfile import CrewConfig
from crewyard.environments import BuildRequest
from crewyard.settings import load

if TYPE_CHECKING:
    from backend_helpers import Runs

pytestmark = pytest.mark.timeout(300)

CREW = """
import six
from crewyard_runtime import artifacts_dir


def main(inputs):
    (artifacts_dir() / "six.txt").write_text(six.__version__)
    return {"six": six.__version__, "marker": MARKER}
"""


def _crew(folder: Path, requirements: str) -> BuildRequest:
    folder.mkdir(parents=True)
    marker = uuid.uuid4().hex  # a source of its own: this session's build is never cached yet
    (folder / "crew_six.py").write_text(f"MARKER = {marker!r}\n{CREW}")
    (folder / "requirements.txt").write_text(requirements)
    return BuildRequest(
        deployment_id="dep_six",
        project="tests",
        source_dir=folder,
        source_digest=folder_digest(folder),
        config=CrewConfig(entrypoint="crew_six:main"),
    )


@pytest.fixture
def built_images(docker_host: str) -> Iterator[list[str]]:
    images: list[str] = []
    yield images
    client = docker.DockerClient(base_url=docker_host)
    for image in images:
        client.images.remove(image, force=True)
    client.close()


async def test_an_image_is_built_offline_from_a_wheelhouse_and_then_reused(
    docker_host: str, base_image: str, tmp_path: Path, docker_runs: Runs, built_images: list[str]
) -> None:
    request = _crew(tmp_path / "src", "six==1.16.0  # a comment\n")
    builder = DockerBuilder(docker_host, base_image, tmp_path / "cache")
    lines: list[str] = []

    async def log(line: str, stream: str) -> None:
        lines.append(line)

    first = await builder.build(request, log)
    assert first.image is not None
    built_images.append(first.image)
    assert (
        first.cached is False and first.backend == "docker" and first.image == f"crewyard/{first.env_digest}"
    )
    assert any("--no-index" in ln for ln in lines), "dependencies must come from the wheelhouse only"
    assert any("Successfully installed six-1.16.0" in ln for ln in lines)

    # The crew runs from the image, with its dependency and the runtime inside.
    spec = docker_runs.spec("crew_six:main")
    spec.image = first.image
    out = await docker_runs.execute(spec)
    assert out.result["six"] == "1.16.0"
    assert out.artifacts == {"six.txt": b"1.16.0"}

    lines.clear()
    again = await DockerBuilder(docker_host, base_image, tmp_path / "cache").build(request, log)
    assert again.cached is True and again.image == first.image and again.env_digest == first.env_digest
    assert lines == [f"image {first.image} already built: skipping the build"]


async def test_an_unresolvable_dependency_fails_the_build(
    docker_host: str, base_image: str, tmp_path: Path
) -> None:
    request = _crew(tmp_path / "src", "crewyard-no-such-package-anywhere==0.0.1\n")
    builder = DockerBuilder(docker_host, base_image, tmp_path / "cache")

    async def log(line: str, stream: str) -> None:
        return None

    with pytest.raises(BuildFailed, match="dependencies cannot be resolved"):
        await builder.build(request, log)


async def test_a_missing_base_image_fails_the_build_with_its_name(docker_host: str, tmp_path: Path) -> None:
    request = _crew(tmp_path / "src", "")
    builder = DockerBuilder(docker_host, "crewyard/no-such-base:1", tmp_path / "cache")

    async def log(line: str, stream: str) -> None:
        return None

    with pytest.raises(BuildFailed, match="crewyard/no-such-base:1"):
        await builder.build(request, log)


def test_auto_builds_images_when_an_engine_answers_and_environments_otherwise(
    docker_host: str, tmp_path: Path
) -> None:
    assert isinstance(select_build_backend(load(tmp_path, docker_host=docker_host), tmp_path), DockerBuilder)
    nowhere = load(tmp_path, docker_host="unix:///nonexistent/engine.sock")
    assert isinstance(select_build_backend(nowhere, tmp_path), VenvBuilder)
    sandboxed = load(tmp_path, docker_host=docker_host, backend="bwrap")
    assert isinstance(select_build_backend(sandboxed, tmp_path), VenvBuilder)
