"""Project events: creation, which deployment is current, environment variables, API keys."""

from __future__ import annotations

from ..bounds import Concurrency
from ._base import Payload


class ProjectCreated(Payload, frozen=True, kw_only=True):
    TYPE = "project.created"
    AGGREGATE = "project"
    name: str


class DeploymentPromoted(Payload, frozen=True, kw_only=True):
    """A deployment becomes the project's current one (after a build, or as a rollback)."""

    TYPE = "deployment.promoted"
    AGGREGATE = "project"
    deployment_id: str
    previous_deployment_id: str | None = None
    rollback: bool = False


class ProjectLimitsSet(Payload, frozen=True, kw_only=True):
    """``max_concurrent_runs`` for the whole project (None: no limit)."""

    TYPE = "project.limits_set"
    AGGREGATE = "project"
    max_concurrent_runs: Concurrency | None = None


class EnvSet(Payload, frozen=True, kw_only=True):
    """``value`` is AES-GCM ciphertext (base64 of nonce + ciphertext); never clear text."""

    TYPE = "env.set"
    AGGREGATE = "project"
    key: str
    value: str


class EnvUnset(Payload, frozen=True, kw_only=True):
    TYPE = "env.unset"
    AGGREGATE = "project"
    key: str


class ApiKeyCreated(Payload, frozen=True, kw_only=True):
    TYPE = "apikey.created"
    AGGREGATE = "project"
    key_id: str
    name: str
    token_sha256: str


class ApiKeyRevoked(Payload, frozen=True, kw_only=True):
    TYPE = "apikey.revoked"
    AGGREGATE = "project"
    key_id: str


PROJECT_EVENTS: tuple[type[Payload], ...] = (
    ProjectCreated,
    DeploymentPromoted,
    ProjectLimitsSet,
    EnvSet,
    EnvUnset,
    ApiKeyCreated,
    ApiKeyRevoked,
)
