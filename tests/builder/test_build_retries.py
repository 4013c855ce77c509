"""Podman's image build looks for cached layers among the images it has and fails with "layer not
known" when one is removed meanwhile (another build's clean-up, a prune): nothing of the build
ran, so the builder builds again (a few times); any other failure is the build's own and is not
tried again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from crewyard.builder.backends import DockerBuilder
from crewyard.builder.backends import docker as docker_backend
from crewyard.core.crewfile import CrewConfig
from crewyard.environments import BuildFailed, BuildRequest

CACHE_LOOKUP = (
    "checking if cached image exists from a previous build: getting top layer info: layer not known"
)


def _builder(
    tmp_path: Path, answers: list[tuple[bool, list[str]]], nocache: list[bool] | None = None
) -> tuple[DockerBuilder, list[str]]:
    builder = DockerBuilder(None, "crewyard/base:test", tmp_path / "cache")
    logged: list[str] = []

    def build(*args: Any) -> tuple[bool, list[str]]:
        if nocache is not None:
            nocache.append(args[4])  # build's nocache
        return answers.pop(0)

    async def exists(tag: str) -> bool:
        return True

    builder._build_blocking = build  # type: ignore[method-assign]
    builder._exists = exists  # type: ignore[method-assign]
    return builder, logged


async def _run(builder: DockerBuilder, logged: list[str], tmp_path: Path) -> None:
    async def log(line: str, stream: str) -> None:
        logged.append(line)

    request = BuildRequest(
        deployment_id="dep_retry",
        project="p",
        source_dir=tmp_path,
        source_digest="sha256-x",
        config=CrewConfig(entrypoint="crew:main"),
    )
    await builder._build(tmp_path, "crewyard/env:x", request, "digest", "crewyard/base:test", log)


async def test_a_build_that_met_a_removed_image_is_built_again(tmp_path: Path) -> None:
    answers = [(False, ["STEP 1/12: FROM x", CACHE_LOOKUP]), (True, ["done"])]
    nocache: list[bool] = []
    builder, logged = _builder(tmp_path, answers, nocache)
    await _run(builder, logged, tmp_path)
    assert not answers and any("building again" in line for line in logged), logged
    # Again without the cache lookup: the image without its layer is still there (a fresh
    # clone's run met it on all three attempts).
    assert nocache == [False, True]


async def test_another_failure_or_a_store_that_keeps_changing_fails_the_build(tmp_path: Path) -> None:
    builder, logged = _builder(tmp_path, [(False, ["error: a RUN step failed"]), (True, [])])
    with pytest.raises(BuildFailed, match="a RUN step failed"):
        await _run(builder, logged, tmp_path)
    always = [(False, [CACHE_LOOKUP])] * docker_backend.BUILD_ATTEMPTS
    builder, logged = _builder(tmp_path, list(always))
    with pytest.raises(BuildFailed, match="layer not known"):
        await _run(builder, logged, tmp_path)
