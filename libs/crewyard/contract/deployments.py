"""Deployments: uploading a crew (a gzip tarball, not JSON) as a new version, reading versions,
rolling back (promotions and environment rollbacks: :mod:`.versions`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

DeploymentStatus = Literal["building", "ready", "failed"]


class Deployment(msgspec.Struct, kw_only=True):
    """A deployment. Readers accept answers with only some fields (what is missing takes its
    default; ``id`` and ``deployment_id`` fill each other)."""

    deployment_id: str = ""
    #: The same as ``deployment_id``.
    id: str = ""
    project: str = ""
    #: The ``deployment_id`` spelled ``ver_…``: the same version.
    version_id: str = ""
    #: This version's number among its deployment name's versions (1, 2, 3…).
    version_number: int | None = None
    #: The deployment name (``[deployments.<name>]``; ``default`` for a single ``[deployment]``).
    name: str | None = None
    status: DeploymentStatus = "building"
    #: The environment the deploy was aimed at: it runs the version once the build is ready.
    environment: str | None = None
    #: The environments that run this version now.
    environments: list[str] = msgspec.field(default_factory=list)
    #: Whether production runs this version now.
    current: bool = False
    source_digest: str = ""
    source_size: int = 0
    #: The crew's configuration as parsed (framework, entrypoint, python, limits …).
    config: dict[str, Any] = msgspec.field(default_factory=dict)
    created_at: str = ""
    ready_at: str | None = None
    backend: str | None = None
    image: str | None = None
    env_digest: str | None = None
    #: Whether the build was reused from an identical earlier one.
    cached: bool | None = None
    build_duration_ms: int | None = None
    error_message: str | None = None
    #: Only in the answer to an upload: what the configuration check noticed, and the build's SSE.
    warnings: list[str] | None = None
    build_log_url: str | None = None

    def __post_init__(self) -> None:
        self.id = self.id or self.deployment_id
        self.deployment_id = self.deployment_id or self.id


class DeploymentList(msgspec.Struct, kw_only=True):
    deployments: list[Deployment]


class Rollback(msgspec.Struct, kw_only=True):
    """``POST /v1/projects/{project}/rollback``: ``environment`` (production) of the version's
    deployment name runs this earlier, ready version again."""

    deployment_id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    #: ``production`` (the default) or ``staging`` (another name is a 400 ``invalid_environment``).
    environment: Annotated[str, msgspec.Meta(max_length=64)] | None = None
