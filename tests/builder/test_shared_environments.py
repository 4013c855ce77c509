"""Environments are shared by digest between projects: a crew whose digest equals another
project's must not be able to choose what that project gets. Mallory builds first, with files
the digest does not cover (a ``compileall.py`` the recipe would run, an uploaded
``node_modules``) or a local wheel named in a way the digest once missed; Alice, with the same
requirements, gets what the recipe makes from them — on both build backends (the bwrap build
sandbox and a build container)."""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import docker
import pytest

from crewyard.builder.backends import DockerBuilder, VenvBuilder
from crewyard.core.crewfile import CrewConfig
from crewyard.environments import BuildRequest, BuildResult
from crewyard.testing.wheels import six_wheel

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]
NODE_BASE_IMAGE = "crewyard/node:bookworm"  # made by scripts/containers.sh
#: Run by ``python -m compileall`` from the crew's folder before the fix: it writes into the
#: environment being built (whoever reuses it imports this).
POISON = """\
import glob, sys
for path in glob.glob(sys.prefix + "/lib/python3*/site-packages/six.py"):
    with open(path, "a") as fh:
        fh.write("\\nPOISONED = True\\n")
"""
#: Reads a file of a built environment: (result, path inside the environment) -> its text or None.
Reader = Callable[[BuildResult, str], Awaitable[str | None]]


class Backend:
    def __init__(self, name: str, builder: VenvBuilder | DockerBuilder, read: Reader) -> None:
        self.name, self.builder, self.read = name, builder, read


@pytest.fixture(params=["venv", "docker"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "venv":

        async def read_venv(result: BuildResult, path: str) -> str | None:
            assert result.venv_dir is not None
            target = result.venv_dir / path
            return target.read_text() if target.is_file() else None

        yield Backend("venv", VenvBuilder(tmp_path / "cache"), read_venv)
        return
    docker_host = request.getfixturevalue("docker_host")
    base_image = request.getfixturevalue("base_image")
    client = docker.DockerClient(base_url=docker_host)
    images: list[str] = []

    async def read_image(result: BuildResult, path: str) -> str | None:
        """The file as the image has it, copied out of a container that is never started (a run
        read through `logs(follow=True)` hung on Podman now and then: 60 s, then a failure)."""
        assert result.image is not None
        images.append(result.image)
        container = client.containers.create(result.image, ["/bin/true"], network_mode="none")
        try:
            chunks, _ = container.get_archive(f"/opt/venv/{path}")
            archive = b"".join(chunks)
        except docker.errors.NotFound:
            return None
        finally:
            container.remove(force=True)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            member = tar.getmembers()[0]
            if not member.isfile():  # a link or a folder is there all the same: say what it is
                return f"<{member.type!r} {member.linkname}>"
            content = tar.extractfile(member)
            assert content is not None
            return content.read().decode()

    builder = DockerBuilder(docker_host, base_image, tmp_path / "cache", node_base_image=NODE_BASE_IMAGE)
    yield Backend("docker", builder, read_image)
    for image in images:
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(image, force=True)
    client.close()


def _request(
    root: Path, project: str, framework: str = "python", entrypoint: str = "crew:main"
) -> BuildRequest:
    return BuildRequest(
        deployment_id=f"dep_{project}", project=project, source_dir=root, source_digest=f"sha256-{project}",
        config=CrewConfig(entrypoint=entrypoint, framework=framework),
    )  # fmt: skip


async def _build(backend: Backend, request: BuildRequest) -> tuple[BuildResult, list[str]]:
    lines: list[str] = []

    async def log(line: str, stream: str) -> None:
        lines.append(line)

    return await backend.builder.build(request, log), lines


def _reused(lines: list[str]) -> bool:
    return any("already built: reusing it" in line for line in lines)


def _crew(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


async def test_a_compileall_in_a_crews_folder_never_runs_in_a_shared_build(
    backend: Backend, tmp_path: Path
) -> None:
    requirements = f"six==1.16.0  # {uuid.uuid4().hex}: an environment of this test's own\n"
    mallory = _crew(tmp_path / "mallory", {"requirements.txt": requirements, "compileall.py": POISON,
                                           "crew.py": "def main(inputs):\n    return {}\n"})  # fmt: skip
    alice = _crew(
        tmp_path / "alice", {"requirements.txt": requirements, "crew.py": "def main(i):\n    return {}\n"}
    )
    first, _ = await _build(backend, _request(mallory, "mallory"))
    second, lines = await _build(backend, _request(alice, "alice"))

    assert _reused(lines), lines  # the same requirements: one environment for both projects
    six = await backend.read(second, "lib/python3.11/site-packages/six.py")
    assert six is not None and "POISONED" not in six
    assert "POISONED" not in (await backend.read(first, "lib/python3.11/site-packages/six.py") or "")


async def test_a_node_modules_uploaded_with_a_crew_never_reaches_a_shared_environment(
    backend: Backend, tmp_path: Path
) -> None:
    manifest = json.dumps({"name": "crew", "private": True, "description": uuid.uuid4().hex})  # no lock
    poisoned = {"node_modules/left-pad/package.json": json.dumps({"name": "left-pad", "version": "1.3.0"}),
                "node_modules/left-pad/index.js": "module.exports = 'POISONED';\n"}  # fmt: skip
    mallory = _crew(
        tmp_path / "mallory", {"package.json": manifest, "crew.ts": "export const g = 1;\n", **poisoned}
    )
    alice = _crew(tmp_path / "alice", {"package.json": manifest, "crew.ts": "export const g = 2;\n"})
    first, _ = await _build(backend, _request(mallory, "mallory", "langgraph-js", "./crew.ts:g"))
    second, lines = await _build(backend, _request(alice, "alice", "langgraph-js", "./crew.ts:g"))

    assert _reused(lines), lines
    assert await backend.read(second, "node_modules/left-pad/index.js") is None
    assert await backend.read(first, "node_modules/left-pad/index.js") is None


async def test_a_local_wheel_named_without_dot_slash_is_part_of_its_environments_name(
    backend: Backend, tmp_path: Path
) -> None:
    wheel = "vendor/six-1.16.0-py3-none-any.whl"
    tag = uuid.uuid4().hex  # environments of this test's own
    requirements = f"--no-index\n{wheel}  # {tag}\n"
    mallory = _crew(tmp_path / "mallory", {"requirements.txt": requirements, "crew.py": "A = 1\n"})
    alice = _crew(tmp_path / "alice", {"requirements.txt": requirements, "crew.py": "A = 1\n"})
    six_wheel(mallory / wheel, "WHO = 'mallory'\n")
    six_wheel(alice / wheel, "WHO = 'alice'\n")
    await _build(backend, _request(mallory, "mallory"))
    second, lines = await _build(backend, _request(alice, "alice"))

    assert not _reused(lines), lines  # other bytes: another environment
    assert await backend.read(second, "lib/python3.11/site-packages/six.py") == "WHO = 'alice'\n"
