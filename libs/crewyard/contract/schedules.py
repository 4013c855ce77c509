"""Schedules: cron in a timezone, exactly once per planned time."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from .triggers import DeploymentId


class ScheduleCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    #: Five fields (minute hour day month weekday) or an alias such as ``@daily``.
    cron: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    timezone: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = "UTC"
    input: dict[str, Any] = msgspec.field(default_factory=dict)
    deployment: DeploymentId | None = None
    environment: Annotated[str, msgspec.Meta(max_length=64)] = "production"
    #: While the previous run is still going: ``skip`` this time, ``queue`` it until that run
    #: ends, or ``allow`` both at once.
    overlap: Literal["skip", "queue", "allow"] = "skip"
    #: After downtime: fire only the ``latest`` missed time, or ``all`` (at most catch_up_limit).
    catch_up: Literal["latest", "all"] = "latest"
    catch_up_limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] | None = None


class Schedule(msgspec.Struct, kw_only=True):
    id: str
    project: str
    name: str | None
    cron: str
    timezone: str
    input: dict[str, Any]
    deployment_id: str | None
    environment: str
    overlap: str
    catch_up: str
    catch_up_limit: int
    status: Literal["active", "paused"]
    created_at: str
    #: The next planned times (UTC, ISO 8601); empty while paused.
    next_fire_times: list[str]
    last_planned_at: str | None
    last_run_id: str | None
    fired: int


class ScheduleList(msgspec.Struct, kw_only=True):
    schedules: list[Schedule]
