"""Project events: creation, environment pointers of deployment names, environment variables.

Environment-variable events are secret-bearing (``SCOPE = "secret"``): they are stored outside
the project's own subjects, so nothing that hands out ``crewyard.evt.<project>.>`` hands them out.
"""

from __future__ import annotations

from ..bounds import Concurrency, DeploymentName, EnvironmentName
from ._base import Payload


class ProjectCreated(Payload, frozen=True, kw_only=True):
    TYPE = "project.created"
    AGGREGATE = "project"
    name: str


class DeploymentPromoted(Payload, frozen=True, kw_only=True):
    """``environment``'s pointer of the version's deployment name moves to ``deployment_id`` (a
    version id) without a rebuild: a promotion (``from_environment`` when it copied another
    environment's pointer) or a rollback. Version 1 had no environment: it meant production."""

    TYPE = "deployment.promoted"
    AGGREGATE = "project"
    VERSION = 2
    deployment_id: str
    previous_deployment_id: str | None = None
    rollback: bool = False
    environment: EnvironmentName = "production"
    name: DeploymentName | None = None
    from_environment: EnvironmentName | None = None


class ProjectLimitsSet(Payload, frozen=True, kw_only=True):
    """``max_concurrent_runs`` for the whole project (None: no limit)."""

    TYPE = "project.limits_set"
    AGGREGATE = "project"
    max_concurrent_runs: Concurrency | None = None


class EnvSet(Payload, frozen=True, kw_only=True):
    """``value`` is AES-GCM ciphertext (base64 of nonce + ciphertext); never clear text.
    ``environment``: the value applies to runs in that environment only (None: in every one,
    unless that environment has a value of its own)."""

    TYPE = "env.set"
    AGGREGATE = "project"
    VERSION = 2
    SCOPE = "secret"
    key: str
    value: str
    environment: EnvironmentName | None = None


class EnvUnset(Payload, frozen=True, kw_only=True):
    TYPE = "env.unset"
    AGGREGATE = "project"
    VERSION = 2
    SCOPE = "secret"
    key: str
    environment: EnvironmentName | None = None


PROJECT_EVENTS: tuple[type[Payload], ...] = (
    ProjectCreated,
    DeploymentPromoted,
    ProjectLimitsSet,
    EnvSet,
    EnvUnset,
)
