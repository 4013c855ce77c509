"""The container engine as the docker build backend meets it: its SDK's errors, translated."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions

from crewyard.errors import CrewyardError

T = TypeVar("T")
ENGINE_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)


class BuildBackendUnavailable(CrewyardError):
    """The container engine cannot be reached (infrastructure: retry later, elsewhere)."""


async def call(what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """One blocking SDK call in a thread, its errors translated."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except docker.errors.APIError as exc:
        raise BuildBackendUnavailable(f"{what}: {exc.explanation or exc}") from exc
    except ENGINE_ERRORS as exc:
        raise BuildBackendUnavailable(f"{what}: the container engine does not answer: {exc}") from exc
