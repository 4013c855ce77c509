"""Deployment events: an immutable crew source, built once, then ready or failed."""

from __future__ import annotations

from typing import Any

from ..bounds import Count, SourceDigest
from ._base import Payload


class DeploymentCreated(Payload, frozen=True, kw_only=True):
    TYPE = "deployment.created"
    AGGREGATE = "deployment"
    source_digest: SourceDigest
    source_size: Count
    config: dict[str, Any]
    name: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None


class BuildStarted(Payload, frozen=True, kw_only=True):
    TYPE = "deployment.build.started"
    AGGREGATE = "deployment"
    builder_id: str
    backend: str


class BuildLog(Payload, frozen=True, kw_only=True):
    TYPE = "deployment.build.log"
    AGGREGATE = "deployment"
    line: str
    stream: str = "stdout"


class DeploymentReady(Payload, frozen=True, kw_only=True):
    TYPE = "deployment.ready"
    AGGREGATE = "deployment"
    env_digest: str
    backend: str
    cached: bool = False
    duration_ms: Count = 0
    image: str | None = None
    #: sha256 of the environment's archive in the object store (venv builds): runners check it.
    env_sha256: str | None = None


class DeploymentFailed(Payload, frozen=True, kw_only=True):
    TYPE = "deployment.failed"
    AGGREGATE = "deployment"
    error_message: str


DEPLOYMENT_EVENTS: tuple[type[Payload], ...] = (
    DeploymentCreated,
    BuildStarted,
    BuildLog,
    DeploymentReady,
    DeploymentFailed,
)
