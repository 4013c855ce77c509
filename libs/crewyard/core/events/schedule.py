"""Schedule events: cron in a timezone, and one ``schedule.fired`` per planned time.

A schedule fires exactly once per planned time because ``schedule.fired`` is appended with the
schedule's expected last sequence: of any number of schedulers deciding the same planned time,
one append wins and the others see it. Planned times are UTC instants.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from ._base import Payload

Overlap = Literal["skip", "queue", "allow"]
CatchUp = Literal["latest", "all"]


class ScheduleCreated(Payload, frozen=True, kw_only=True):
    TYPE = "schedule.created"
    AGGREGATE = "schedule"
    cron: str
    timezone: str
    input: dict[str, Any]
    deployment_id: str | None = None
    environment: str = "production"
    overlap: Overlap = "skip"
    #: After downtime: fire only the latest missed time, or all of them (at most ``catch_up_limit``).
    catch_up: CatchUp = "latest"
    catch_up_limit: int = 10
    name: str | None = None


class SchedulePaused(Payload, frozen=True, kw_only=True):
    TYPE = "schedule.paused"
    AGGREGATE = "schedule"


class ScheduleResumed(Payload, frozen=True, kw_only=True):
    """Planned times while paused are never fired: planning starts again at this event's time."""

    TYPE = "schedule.resumed"
    AGGREGATE = "schedule"


class ScheduleDeleted(Payload, frozen=True, kw_only=True):
    TYPE = "schedule.deleted"
    AGGREGATE = "schedule"


class ScheduleFired(Payload, frozen=True, kw_only=True):
    """A planned time, consumed: ``queued`` (``run_id`` is the run it starts), ``skipped`` (the
    previous run was still going and overlap is ``skip``) or ``failed`` (no deployment to run).
    ``missed`` counts earlier planned times that the catch-up policy let pass unfired."""

    TYPE = "schedule.fired"
    AGGREGATE = "schedule"
    planned_at: datetime
    outcome: Literal["queued", "skipped", "failed"]
    run_id: str | None = None
    reason: str | None = None
    missed: int = 0


SCHEDULE_EVENTS: tuple[type[Payload], ...] = (
    ScheduleCreated,
    SchedulePaused,
    ScheduleResumed,
    ScheduleDeleted,
    ScheduleFired,
)
