"""An engine that answered a build's step with an error, or did not finish it in time, fails the
build (what the step handed it is the crew's); only one that cannot be reached has the build
tried again later."""

from __future__ import annotations

from collections.abc import Callable

import docker.errors
import pytest
import requests

from crewyard.builder.backends import BuildBackendUnavailable
from crewyard.builder.backends._engine import call
from crewyard.environments import BuildFailed


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
