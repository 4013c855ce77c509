"""An engine that answered a build's step with an error, or did not finish it in time, fails the
build (what the step handed it is the crew's); only one that cannot be reached has the build
tried again later — also while the build container runs: a wait that timed out means the build
goes on, one the engine could not take means the engine is gone."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker.errors
import pytest
import requests
import urllib3.exceptions

from crewyard.builder.backends import BuildBackendUnavailable
from crewyard.builder.backends import _stage as _stage_module
from crewyard.builder.backends._engine import call
from crewyard.environments import BuildFailed, BuildLimits
from crewyard.environments.registry import Registry


def _raises(exc: BaseException) -> Callable[[], None]:
    def fn() -> None:
        raise exc

    return fn


async def test_an_engine_that_refused_a_step_fails_the_build() -> None:
    refused = docker.errors.APIError("500 Server Error", explanation="commit: file name too long")
    with pytest.raises(BuildFailed, match="refused it: commit: file name too long"):
        await call("dependency stage", _raises(refused))


async def test_an_engine_that_took_too_long_fails_the_build() -> None:
    with pytest.raises(BuildFailed, match="did not finish it in time"):
        await call("dependency stage", _raises(requests.exceptions.ReadTimeout("read timed out")))


async def test_an_engine_that_cannot_be_reached_is_tried_again_later() -> None:
    for down in (requests.exceptions.ConnectionError("refused"), requests.exceptions.ConnectTimeout("x")):
        with pytest.raises(BuildBackendUnavailable, match="does not answer"):
            await call("dependency stage", _raises(down))


def _read_timed_out() -> requests.exceptions.ConnectionError:
    """What the SDK raises over a unix socket when the engine took longer than the client waits."""
    reason = urllib3.exceptions.ReadTimeoutError(None, "/containers/c/wait", "Read timed out.")  # type: ignore[arg-type]
    return requests.exceptions.ConnectionError(reason)


class BuildContainerEngine:
    """The engine as a dependency stage meets it: the container is made and started, and each
    wait for its end answers with the next of ``waits`` (an exception is raised)."""

    def __init__(self, waits: list[object]) -> None:
        self.waits = waits
        self.asked = 0

    def create_host_config(self, **settings: Any) -> dict[str, Any]:
        return settings

    def create_container(self, *args: Any, **kwargs: Any) -> dict[str, str]:
        return {"Id": "c1"}

    def put_archive(self, *args: Any) -> None: ...

    def start(self, cid: str) -> None: ...

    def logs(self, *args: Any, **kwargs: Any) -> Iterator[bytes]:
        return iter([b"installing\n"])

    def inspect_container(self, cid: str) -> dict[str, Any]:
        return {"State": {"Pid": 0}}

    def wait(self, cid: str, timeout: float) -> object:
        self.asked += 1
        answer = self.waits.pop(0) if len(self.waits) > 1 else self.waits[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def kill(self, cid: str) -> None: ...

    def commit(self, *args: Any, **kwargs: Any) -> None: ...

    def remove_container(self, cid: str, force: bool) -> None:
        if isinstance(self.waits[-1], requests.exceptions.ConnectionError):
            raise self.waits[-1]  # gone for this too


async def _stage(tmp_path: Path, engine: BuildContainerEngine) -> tuple[bool, list[str]]:
    return await call(
        "dependency stage", _stage_module.run_stage, engine, image="base", tag="crewyard/env:x",
        script="true\n", source_dir=tmp_path, files=[], registry=Registry(env={}, binds={}, uv_args=[]),
        uv="/usr/bin/true", labels={}, emit=lambda line: None, limits=BuildLimits(timeout_s=10),
        engine_network="crewyard-builds",
    )  # fmt: skip


async def test_an_engine_that_went_away_during_a_build_is_tried_again_later_at_once(tmp_path: Path) -> None:
    engine = BuildContainerEngine([requests.exceptions.ConnectionError("connection refused")])
    began = time.monotonic()
    with pytest.raises(BuildBackendUnavailable, match="stopped answering during the build"):
        await _stage(tmp_path, engine)
    # Not waits failing at full speed until the time limit, then blamed on the build.
    assert engine.asked == 1 and time.monotonic() - began < 5


async def test_a_wait_that_timed_out_means_the_build_is_still_running(tmp_path: Path) -> None:
    engine = BuildContainerEngine([_read_timed_out(), _read_timed_out(), {"StatusCode": 0, "Error": None}])
    assert await _stage(tmp_path, engine) == (True, ["installing"])
    assert engine.asked == 3


async def test_an_engine_that_took_too_long_over_its_socket_fails_the_build() -> None:
    with pytest.raises(BuildFailed, match="did not finish it in time"):
        await call("dependency stage", _raises(_read_timed_out()))
