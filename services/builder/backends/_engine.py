"""The container engine as the docker build backend meets it: its SDK's errors, translated."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions
import urllib3.exceptions

from crewyard.environments import BuildFailed
from crewyard.errors import CrewyardError

T = TypeVar("T")
ENGINE_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)


class BuildBackendUnavailable(CrewyardError):
    """The container engine cannot be reached (infrastructure: retry later, elsewhere)."""


def timed_out(exc: BaseException) -> bool:
    """Whether the engine answered too slowly (``exc`` from its SDK), rather than not at all.

    Over a unix socket, requests reports a read that timed out as a ``ConnectionError`` around
    urllib3's ``ReadTimeoutError``, not as ``ReadTimeout``: only the reason tells them apart."""
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return True
    return isinstance(exc, requests.exceptions.ConnectionError) and any(
        isinstance(arg, urllib3.exceptions.ReadTimeoutError) for arg in exc.args
    )


async def call(what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """One blocking SDK call in a thread, its errors translated: an engine that cannot be reached
    is :class:`BuildBackendUnavailable` (the build is tried again later); one that answered with
    an error, or took longer than the client waits, fails this build (what a build's steps hand
    the engine is the crew's: a layer too large to commit in time, a path too deep for it, would
    otherwise have the whole build made again and again, others' builds waiting behind it)."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except docker.errors.APIError as exc:
        raise BuildFailed(f"{what}: the container engine refused it: {exc.explanation or exc}") from exc
    except ENGINE_ERRORS as exc:
        if timed_out(exc):
            raise BuildFailed(f"{what}: the container engine did not finish it in time: {exc}") from exc
        raise BuildBackendUnavailable(f"{what}: the container engine does not answer: {exc}") from exc
