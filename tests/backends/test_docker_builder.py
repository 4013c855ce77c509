"""The docker build backend: dependencies installed in a build container (never on the host),
an environment image shared by crews with the same dependencies, a crew image never built twice."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import docker
import pytest
from backend_helpers import folder_digest

from crewyard.builder.backends import BuildFailed, DockerBuilder, VenvBuilder, select_build_backend
from crewyard.builder.backends._stage import LABEL_STAGE, ORPHAN_MARGIN_S, engine_now, sweep_orphans
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


def _crew(folder: Path, requirements: str, python: str | None = None) -> BuildRequest:
    folder.mkdir(parents=True)
    marker = uuid.uuid4().hex  # a source of its own: this session's build is never cached yet
    (folder / "crew_six.py").write_text(f"MARKER = {marker!r}\n{CREW}")
    (folder / "requirements.txt").write_text(requirements)
    return BuildRequest(
        deployment_id="dep_six",
        project="tests",
        source_dir=folder,
        source_digest=folder_digest(folder),
        config=CrewConfig(entrypoint="crew_six:main", python=python),
    )


async def _quiet(line: str, stream: str) -> None:
    return None


@pytest.fixture
def built_images(docker_host: str) -> Iterator[list[str]]:
    images: list[str] = []
    yield images
    client = docker.DockerClient(base_url=docker_host)
    for image in images:
        client.images.remove(image, force=True)
    client.close()


async def test_dependencies_are_installed_in_a_build_container_and_images_are_reused(
    docker_host: str, base_image: str, tmp_path: Path, docker_runs: Runs, built_images: list[str]
) -> None:
    requirements = f"six==1.16.0  # {uuid.uuid4().hex}: an environment of this test's own\n"
    request = _crew(tmp_path / "src", requirements)
    builder = DockerBuilder(docker_host, base_image, tmp_path / "cache")
    lines: list[str] = []

    async def log(line: str, stream: str) -> None:
        lines.append(line)

    first = await builder.build(request, log)
    assert first.image is not None
    built_images.append(first.image)
    built_images += [ln.split()[3] for ln in lines if ln.startswith("building environment image ")]
    assert (
        first.cached is False and first.backend == "docker" and first.image == f"crewyard/{first.env_digest}"
    )
    assert any("in a build container" in ln for ln in lines), lines
    assert any("+ six==1.16.0" in ln for ln in lines), lines

    # The crew runs from the image, with its dependency (compiled at build time) and the runtime.
    spec = docker_runs.spec("crew_six:main")
    spec.image = first.image
    out = await docker_runs.execute(spec)
    assert out.result["six"] == "1.16.0"
    assert out.artifacts == {"six.txt": b"1.16.0"}

    lines.clear()
    again = await DockerBuilder(docker_host, base_image, tmp_path / "cache").build(request, log)
    assert again.cached is True and again.image == first.image and again.env_digest == first.env_digest
    assert lines == [f"image {first.image} already built: skipping the build"]

    # Another crew with the same dependencies: a new image on the same environment image.
    lines.clear()
    other = await builder.build(_crew(tmp_path / "other", requirements), log)
    assert other.image is not None and other.image != first.image
    built_images.append(other.image)
    assert any("already built: reusing it" in ln for ln in lines), lines


async def test_a_crew_asking_for_another_python_than_the_base_image_has_fails_clearly(
    docker_host: str, base_image: str, tmp_path: Path
) -> None:
    request = _crew(tmp_path / "src", "", python="3.99")
    builder = DockerBuilder(docker_host, base_image, tmp_path / "cache")
    with pytest.raises(BuildFailed, match=r"asks for Python 3\.99.*has Python 3\.\d+"):
        await builder.build(request, _quiet)


async def test_an_unresolvable_dependency_fails_the_build(
    docker_host: str, base_image: str, tmp_path: Path
) -> None:
    request = _crew(tmp_path / "src", "crewyard-no-such-package-anywhere==0.0.1\n")
    builder = DockerBuilder(docker_host, base_image, tmp_path / "cache")

    async def log(line: str, stream: str) -> None:
        return None

    with pytest.raises(BuildFailed, match="dependencies failed to install"):
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


async def test_a_dead_builders_build_container_is_removed_by_any_builder(
    docker_host: str, base_image: str
) -> None:
    # A builder killed mid-build leaves its build container running the crew's script (a live
    # builder stops it at the time limit): once older than the limit by a margin (by the
    # engine's clock), it is no build's, and any builder's sweep removes it. A younger one may be
    # a live build's: kept.
    # (Only this test's containers: other tests' builds may be running on the engine meanwhile.)
    client = docker.DockerClient(base_url=docker_host)
    api = client.api
    mine = f"crewyard.test.{uuid.uuid4().hex[:8]}"
    labels = {LABEL_STAGE: "1", mine: "1"}
    made = [api.create_container(base_image, ["sleep", "1000"], labels=labels)["Id"] for _ in range(2)]
    try:
        for cid in made:
            api.start(cid)
        assert abs((engine_now(api) or 0) - time.time()) < 60  # the engine's clock: this machine's
        assert sweep_orphans(api, timeout_s=1800, among=mine) == 0  # just started: a live build's, maybe
        assert {c["Id"] for c in api.containers(filters={"label": mine})} == set(made)
        later = time.time() + 1800 + ORPHAN_MARGIN_S + 60
        assert sweep_orphans(api, timeout_s=1800, now=later, among=mine) == 2
        assert api.containers(all=True, filters={"label": mine}) == []
    finally:
        for cid in made:
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_container(cid, force=True)
        client.close()
