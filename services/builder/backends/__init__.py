"""Build backends: a deployment's source into what the runner executes (venv or image).

``select_build_backend(settings, cache_dir, objects)``: ``auto`` builds images when a container engine
answers (the runner's ``auto`` then runs them with the docker backend) and virtual environments
otherwise, or when the execution backend is set to one that runs environments (bwrap, process).
It pings the engine synchronously; from async code use ``asyncio.to_thread``.
"""

from __future__ import annotations

from pathlib import Path

from crewyard.environments import BuildBackend, BuildFailed, BuildRequest, BuildResult, LogSink, VenvBuilder
from crewyard.objects import ObjectStore
from crewyard.privatenet import NetworkPolicy
from crewyard.settings import Settings

from .docker import BuildBackendUnavailable, DockerBuilder

__all__ = [
    "BuildBackend",
    "BuildBackendUnavailable",
    "BuildFailed",
    "BuildRequest",
    "BuildResult",
    "DockerBuilder",
    "LogSink",
    "VenvBuilder",
    "select_build_backend",
]


def select_build_backend(
    settings: Settings, cache_dir: Path, objects: ObjectStore | None = None
) -> BuildBackend:
    choice = settings.build_backend
    policy = NetworkPolicy(allow=settings.network_allow_list)
    venv = VenvBuilder(cache_dir, objects, network=policy)
    if choice == "venv" or (choice == "auto" and settings.backend in ("bwrap", "process")):
        return venv  # those backends run virtual environments, never images
    if choice not in ("docker", "auto"):
        raise ValueError(f"unknown build backend {choice!r}; use auto, docker or venv")
    docker = DockerBuilder(
        settings.docker_host, settings.base_image, cache_dir, node_base_image=settings.node_base_image,
        network_policy=policy, engine_network=settings.docker_network, build_uid=settings.sandbox_uid,
    )  # fmt: skip
    try:
        docker.ping()
    except BuildBackendUnavailable as exc:
        if choice == "docker":
            raise BuildBackendUnavailable(f"build backend 'docker' was chosen but {exc}") from None
        return venv
    return docker
