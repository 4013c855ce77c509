"""Projects, their environment variables (values are write-only) and their limits."""

from __future__ import annotations

from typing import Annotated

import msgspec

#: The gateway's bounds (a test keeps them equal to the core's and the gateway's).
MAX_VALUE = 32 * 1024
MAX_CONCURRENCY = 100_000
EnvValueText = Annotated[str, msgspec.Meta(max_length=MAX_VALUE)]
Concurrency = Annotated[int, msgspec.Meta(ge=1, le=MAX_CONCURRENCY)]


class Project(msgspec.Struct, kw_only=True):
    name: str
    created_at: str = ""
    current_deployment_id: str | None = None
    max_concurrent_runs: int | None = None


class ProjectList(msgspec.Struct, kw_only=True):
    projects: list[Project]


class EnvValue(msgspec.Struct, kw_only=True):
    """``PUT /v1/projects/{project}/env/{KEY}``: the value is encrypted and never returned. With
    ``environment`` it applies to runs in that environment only (over the unscoped value)."""

    value: EnvValueText
    #: ``production`` or ``staging`` (another name is a 400 ``invalid_environment``).
    environment: Annotated[str, msgspec.Meta(max_length=64)] | None = None


class EnvVar(msgspec.Struct, kw_only=True):
    key: str
    #: None: every environment.
    environment: str | None = None
    updated_at: str | None = None


class EnvList(msgspec.Struct, kw_only=True):
    env: list[EnvVar]


class EnvChanged(msgspec.Struct, kw_only=True):
    key: str
    project: str = ""
    environment: str | None = None
    #: Only in the answer to ``DELETE``.
    deleted: bool | None = None


class Limits(msgspec.Struct, kw_only=True):
    """``PUT /v1/projects/{project}/limits``: at most n runs at once; null lifts the limit."""

    max_concurrent_runs: Concurrency | None = None


class LimitsSet(msgspec.Struct, kw_only=True):
    project: str = ""
    max_concurrent_runs: int | None = None
