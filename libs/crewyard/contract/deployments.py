"""Deployments: uploading a crew (a gzip tarball, not JSON), reading them, rolling back."""

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
    #: The ``[deployments.<name>]`` it was built from (None for a single ``[deployment]``).
    name: str | None = None
    status: DeploymentStatus = "building"
    #: Whether runs of the project use this deployment now.
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
    """``POST /v1/projects/{project}/rollback``: make this earlier, ready deployment current."""

    deployment_id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
