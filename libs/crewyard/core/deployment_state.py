"""Deployment (one version) and project state, folded from their events (pure)."""

from __future__ import annotations

from typing import Any

import msgspec

from .events import (
    DeploymentCreated,
    DeploymentFailed,
    DeploymentReady,
    EnvSet,
    EnvUnset,
    ProjectCreated,
    ProjectLimitsSet,
    Recorded,
    Unreadable,
)

BUILDING, READY, FAILED = "building", "ready", "failed"


class DeploymentState(msgspec.Struct, kw_only=True):
    deployment_id: str
    project: str = ""
    name: str = "default"
    status: str = ""
    version: int = 0
    source_digest: str = ""
    config: dict[str, Any] = msgspec.field(default_factory=dict)
    env_digest: str | None = None
    backend: str | None = None
    image: str | None = None
    env_sha256: str | None = None
    error_message: str | None = None

    @property
    def exists(self) -> bool:
        return self.status != ""


def fold_deployment(deployment_id: str, history: list[Recorded]) -> DeploymentState:
    state = DeploymentState(deployment_id=deployment_id)
    for rec in history:
        data = rec.event.data
        state.version = rec.seq
        if isinstance(data, Unreadable):
            continue  # its place counts (expected sequence), its content is unknown
        state.project = rec.event.project
        if isinstance(data, DeploymentCreated):
            state.status, state.source_digest, state.config = BUILDING, data.source_digest, data.config
            state.name = data.name
        elif isinstance(data, DeploymentReady):
            state.status, state.env_digest, state.backend, state.image = (
                READY,
                data.env_digest,
                data.backend,
                data.image,
            )
            state.env_sha256 = data.env_sha256
        elif isinstance(data, DeploymentFailed):
            state.status, state.error_message = FAILED, data.error_message
    return state


def sealed_name(key: str, environment: str | None) -> str:
    """The name an environment variable's value is sealed under (the ciphertext's associated
    data): a scoped value cannot be replayed as another environment's or as the unscoped one."""
    return key if environment is None else f"{key}@{environment}"


class ProjectState(msgspec.Struct, kw_only=True):
    name: str
    exists: bool = False
    version: int = 0
    env: dict[str, str] = msgspec.field(default_factory=dict)  # key → ciphertext (every environment)
    #: environment → key → ciphertext: values for one environment only.
    scoped_env: dict[str, dict[str, str]] = msgspec.field(default_factory=dict)
    max_concurrent_runs: int | None = None

    def env_for(self, environment: str) -> dict[str, tuple[str, str]]:
        """key → (ciphertext, sealed name) for a run in ``environment``: the environment's own
        values over the unscoped ones."""
        out = {key: (token, sealed_name(key, None)) for key, token in self.env.items()}
        for key, token in self.scoped_env.get(environment, {}).items():
            out[key] = (token, sealed_name(key, environment))
        return out

    def has_env(self, key: str, environment: str | None) -> bool:
        return key in (self.env if environment is None else self.scoped_env.get(environment, {}))


def fold_project(name: str, history: list[Recorded]) -> ProjectState:
    state = ProjectState(name=name)
    for rec in history:
        data = rec.event.data
        state.version = rec.seq
        if isinstance(data, ProjectCreated):
            state.exists = True
        elif isinstance(data, EnvSet):
            values = (
                state.env if data.environment is None else state.scoped_env.setdefault(data.environment, {})
            )
            values[data.key] = data.value
        elif isinstance(data, EnvUnset):
            values = state.env if data.environment is None else state.scoped_env.get(data.environment, {})
            values.pop(data.key, None)
        elif isinstance(data, ProjectLimitsSet):
            state.max_concurrent_runs = data.max_concurrent_runs
    return state
