"""Deployment and project state, folded from their events (pure)."""

from __future__ import annotations

from typing import Any

import msgspec

from .events import (
    DeploymentCreated,
    DeploymentFailed,
    DeploymentPromoted,
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


class ProjectState(msgspec.Struct, kw_only=True):
    name: str
    exists: bool = False
    version: int = 0
    current_deployment_id: str | None = None
    env: dict[str, str] = msgspec.field(default_factory=dict)  # key → ciphertext
    max_concurrent_runs: int | None = None


def fold_project(name: str, history: list[Recorded]) -> ProjectState:
    state = ProjectState(name=name)
    for rec in history:
        data = rec.event.data
        state.version = rec.seq
        if isinstance(data, ProjectCreated):
            state.exists = True
        elif isinstance(data, DeploymentPromoted):  # rollbacks (ready deployments are current too)
            state.current_deployment_id = data.deployment_id
        elif isinstance(data, EnvSet):
            state.env[data.key] = data.value
        elif isinstance(data, EnvUnset):
            state.env.pop(data.key, None)
        elif isinstance(data, ProjectLimitsSet):
            state.max_concurrent_runs = data.max_concurrent_runs
    return state
