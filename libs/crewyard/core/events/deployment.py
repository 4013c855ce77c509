"""Deployment events: an immutable crew source, built once, then ready or failed.

A deployment event's aggregate is one **version** (``dep_…`` ids, also spelled ``ver_…``) of a
deployment name (``[deployments.<name>]``, ``default`` for a single ``[deployment]``).
"""

from __future__ import annotations

from typing import Any

from ..bounds import Count, DeploymentName, EnvironmentName, SourceDigest
from ._base import Payload


class DeploymentCreated(Payload, frozen=True, kw_only=True):
    """A new version of the deployment ``name``. When it becomes ready, ``environment``'s pointer
    moves to it (the environment the deploy was aimed at; version 1 of this event had none and
    meant production)."""

    TYPE = "deployment.created"
    AGGREGATE = "deployment"
    VERSION = 2
    source_digest: SourceDigest
    source_size: Count
    config: dict[str, Any]
    name: DeploymentName = "default"
    environment: EnvironmentName = "production"
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
