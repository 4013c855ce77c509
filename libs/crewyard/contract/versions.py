"""Deployment names, their versions and environments: promote and roll back."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

EnvironmentName = Literal["production", "staging"]

VersionRef = Annotated[str, msgspec.Meta(pattern=r"^(dep|ver)_[0-9a-z]{26}\Z")]


class Promote(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Point environment ``to`` at ``from``'s current version, or at ``version_id``."""

    to: EnvironmentName = "production"
    from_: EnvironmentName | None = msgspec.field(default=None, name="from")
    version_id: VersionRef | None = None


class EnvironmentRollback(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Move ``environment``'s pointer back to ``version_id``, or to the version it held before."""

    environment: EnvironmentName = "production"
    version_id: VersionRef | None = None


class EnvironmentPointer(msgspec.Struct, kw_only=True):
    deployment_id: str
    version_id: str
    version_number: int
    updated_at: str = ""


class DeploymentOverview(msgspec.Struct, kw_only=True):
    """A deployment name: which version each environment runs, how many versions it has."""

    project: str
    name: str
    versions: int
    latest_version_number: int
    environments: dict[str, EnvironmentPointer]


class PointerMoved(msgspec.Struct, kw_only=True):
    """The answer to a promotion or rollback: where the pointer is now, and where it was."""

    project: str
    name: str
    environment: str
    deployment_id: str
    version_id: str
    version_number: int
    previous_deployment_id: str | None
    rollback: bool
