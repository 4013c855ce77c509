"""Talking to a Docker-API engine from asyncio: error translation and the blocking-call helpers."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import docker
import docker.errors
import requests.exceptions

from ._base import BackendError, BackendUnavailable

T = TypeVar("T")
ENGINE_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)


@contextlib.contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Turn the SDK's exceptions into ours, so callers never import docker."""
    try:
        yield
    except docker.errors.APIError as exc:
        raise BackendError(f"{what}: {exc.explanation or exc}") from exc
    except ENGINE_ERRORS as exc:
        raise BackendUnavailable(f"{what}: the container engine does not answer: {exc}") from exc


def connect(docker_host: str | None, timeout: float = 30.0) -> tuple[docker.DockerClient, str]:
    """A client for ``docker_host`` (or ``DOCKER_HOST``) and the engine's name and version.

    The API version comes from the headers of ``/_ping`` rather than from ``/version``, which
    Podman answers in about half a second (it asks conmon and runc for theirs).
    """

    def client(version: str) -> docker.DockerClient:  # with a version given, no request is made
        if docker_host:
            return docker.DockerClient(
                base_url=docker_host, version=version, timeout=int(timeout), max_pool_size=64
            )
        return docker.from_env(version=version, timeout=int(timeout), max_pool_size=64)

    with translate_errors("connect to the container engine"):
        probe = client("1.24")
        try:
            response = probe.api.get(f"{probe.api.base_url}/_ping", timeout=timeout)
            response.raise_for_status()
        finally:
            probe.close()
        return client(response.headers.get("Api-Version") or "1.41"), engine_name(
            response.headers.get("Server", "")
        )


def engine_name(server: str) -> str:
    """``Libpod/4.3.1 (linux)`` → ``Podman 4.3.1``; ``Docker/27.1 (linux)`` → ``Docker Engine 27.1``."""
    product, _, rest = server.partition("/")
    version = rest.split(" ")[0] or "?"
    if product.lower() == "libpod":
        return f"Podman {version}"
    if product.lower() == "docker":
        return f"Docker Engine {version}"
    return server or "unknown engine"


def in_thread(fn: Callable[[], T], name: str) -> asyncio.Future[T]:
    """Run a call that blocks for a long time on a thread of its own; await its result."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, exc: BaseException | None) -> None:
        if fut.done():
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result, exc = fn(), None
        except BaseException as e:  # handed over to the awaiting side
            result, exc = None, e
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            loop.call_soon_threadsafe(settle, result, exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return fut


class ContainerGone(BackendError):
    """The run's container no longer exists (removed by us or by someone with engine access)."""
