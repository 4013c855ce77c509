"""Execution backends: where a run's crew actually executes (see README.md next to this file).

``select_backend(settings)`` returns the backend the settings ask for — ``auto`` picks docker
when a container engine answers, else bwrap when it can sandbox here, and never the unisolated
process backend, which runs only when chosen explicitly — and fails at start-up, with the
reason, when no backend it may pick can work. ``doctor(settings)`` reports every backend's
state for ``crewyard doctor``/``up``.

Both call the engine synchronously (a ping, a trial sandbox: well under a second); from async
code run them with ``asyncio.to_thread``.
"""

from __future__ import annotations

import shutil

import msgspec

from crewyard import cgroups, privatenet, sandboxuid
from crewyard.settings import Settings

from . import _bwrap_server
from ._base import (
    ARTIFACTS_IN_CONTAINER,
    BackendError,
    BackendUnavailable,
    ExecutionBackend,
    ExitStatus,
    Limits,
    RunHandle,
    RunSpec,
    runtime_env,
)
from .bwrap import BwrapBackend, probe
from .docker import DockerBackend
from .process import ProcessBackend

__all__ = [
    "ARTIFACTS_IN_CONTAINER",
    "BackendError",
    "BackendStatus",
    "BackendUnavailable",
    "BwrapBackend",
    "DockerBackend",
    "ExecutionBackend",
    "ExitStatus",
    "Limits",
    "ProcessBackend",
    "RunHandle",
    "RunSpec",
    "doctor",
    "runtime_env",
    "select_backend",
]


class BackendStatus(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    usable: bool
    reason: str


def _policy(settings: Settings) -> privatenet.NetworkPolicy:
    return privatenet.NetworkPolicy(allow=settings.network_allow_list)


def _docker(settings: Settings) -> DockerBackend:
    return DockerBackend(
        settings.docker_host,
        artifact_max_file_bytes=settings.artifact_max_file_bytes,
        artifact_max_total_bytes=settings.artifact_max_total_bytes,
        network_policy=_policy(settings),
        engine_network=settings.docker_network,
        user_uid=settings.sandbox_uid,
    )


def _bwrap(settings: Settings) -> BwrapBackend:
    return BwrapBackend(
        artifact_max_file_bytes=settings.artifact_max_file_bytes,
        artifact_max_total_bytes=settings.artifact_max_total_bytes,
        network_policy=_policy(settings),
        host_uid=settings.sandbox_uid,
    )


def _docker_status(settings: Settings) -> BackendStatus:
    try:
        engine = _docker(settings).describe()
    except BackendError as exc:
        hint = (
            ""  # an engine was named, or the engine is not what is wrong (the uid is)
            if settings.docker_host or sandboxuid.problem(settings.sandbox_uid) is not None
            else (
                " — set CREWYARD_DOCKER_HOST to a Docker or Podman API socket (scripts/containers.sh sets up"
                " podman and prints one)"
            )
        )
        return BackendStatus(name="docker", usable=False, reason=f"{exc}{hint}")
    if settings.docker_network:
        return BackendStatus(
            name="docker", usable=True, reason=f"{engine}; network {settings.docker_network}"
        )
    problem = privatenet.probe()
    if problem:
        return BackendStatus(
            name="docker",
            usable=False,
            reason=f"{engine}, but no private network for containers: {problem}"
            " (or set CREWYARD_DOCKER_NETWORK to an engine network you have firewalled)",
        )
    return BackendStatus(name="docker", usable=True, reason=f"{engine}; private network per container")


def _bwrap_status(settings: Settings) -> BackendStatus:
    problem = probe()
    if problem:
        return BackendStatus(name="bwrap", usable=False, reason=problem)
    found = shutil.which("bwrap") or "bwrap"
    no_forks = _bwrap_server.unavailable(found, settings.sandbox_uid)
    forks = "warm runs forked from fork servers" if no_forks is None else f"no fork servers ({no_forks})"
    return BackendStatus(
        name="bwrap", usable=True, reason=f"namespaces work; limits: {cgroups.describe()}; {forks}"
    )


def doctor(settings: Settings) -> list[BackendStatus]:
    """The state of every backend on this host, in the order ``auto`` considers them."""
    return [
        _docker_status(settings),
        _bwrap_status(settings),
        BackendStatus(
            name="process",
            usable=True,
            reason="NOT isolated: the crew runs as the runner's user, with the host's files and network;"
            " used only when chosen explicitly (--backend process), for development",
        ),
    ]


def select_backend(settings: Settings) -> ExecutionBackend:
    choice = settings.backend
    if choice == "process":
        return ProcessBackend()
    if choice in ("docker", "auto"):
        status = _docker_status(settings)
        if status.usable:
            return _docker(settings)
        if choice == "docker":
            raise BackendUnavailable(f"backend 'docker' was chosen but {status.reason}")
    if choice in ("bwrap", "auto"):
        status = _bwrap_status(settings)
        if status.usable:
            return _bwrap(settings)
        if choice == "bwrap":
            raise BackendUnavailable(f"backend 'bwrap' was chosen but {status.reason}")
    if choice == "auto":
        # Never fall back to running crews unisolated: that is the operator's explicit choice.
        reasons = "; ".join(
            f"{s.name}: {s.reason}" for s in (_docker_status(settings), _bwrap_status(settings))
        )
        raise BackendUnavailable(
            f"no isolating backend works here ({reasons}). Run `crewyard doctor` for details; to run"
            " crews without isolation (development only) choose --backend process"
        )
    raise BackendError(f"unknown backend {choice!r}; use auto, docker, bwrap or process")
