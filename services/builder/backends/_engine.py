"""The container engine as the docker build backend meets it: its SDK's errors, translated."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions

from crewyard.environments import BuildFailed
from crewyard.errors import CrewyardError

T = TypeVar("T")
ENGINE_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)


class BuildBackendUnavailable(CrewyardError):
    """The container engine cannot be reached (infrastructure: retry later, elsewhere)."""


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
    except requests.exceptions.ReadTimeout as exc:
        raise BuildFailed(f"{what}: the container engine did not finish it in time: {exc}") from exc
    except ENGINE_ERRORS as exc:
        raise BuildBackendUnavailable(f"{what}: the container engine does not answer: {exc}") from exc
