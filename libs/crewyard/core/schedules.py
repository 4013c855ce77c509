"""Schedules as pure code: cron in a timezone, the schedule's state, and what to fire when.

Cron expressions have five fields (minute hour day month weekday) or an alias (``@hourly``,
``@daily``…), evaluated in the schedule's IANA timezone by ``croniter`` and ``zoneinfo``.
Daylight saving time, the way cron users expect it:

- a wall-clock time that does not exist (spring forward) fires at the same instant a clock that
  kept the old offset would show it, i.e. shifted forward by the gap (02:30 → 03:30);
- a wall-clock time that happens twice (fall back) fires once, at its first occurrence — unless
  the hour field is ``*`` or ``*/n``: hourly and more frequent schedules fire in both hours,
  because those are different hours.

Every planned time is a UTC instant. A schedule fires each planned time at most once (its fold
remembers the last one fired; the scheduler appends with the expected sequence), never a time
before its creation or inside a pause.

``croniter`` walks wall-clock times in order, and their instants are not always in that order:
in a repeated hour the second pass of 01:00 comes after the first pass of 01:59, and after a
forward jump a wall time can be an instant earlier than the shifted one before it. So the
instants are held until no later wall time can give an earlier one (see :func:`times_after`),
and come out strictly increasing, none skipped.
"""

from __future__ import annotations

import heapq
import re
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from croniter import CroniterError, croniter

from crewyard.errors import CrewyardError

from .events import (
    Recorded,
    ScheduleCreated,
    ScheduleDeleted,
    ScheduleFired,
    SchedulePaused,
    ScheduleResumed,
)

#: How far back catch-up looks, in planned times (a minutely schedule down for a week is 10,080).
MAX_SCAN = 20_000


class InvalidSchedule(CrewyardError, ValueError):
    pass


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder of zones ("America")
        raise InvalidSchedule(f"unknown timezone {name!r} (use an IANA name such as Europe/Berlin)") from None


#: Zone files that are no zone every machine agrees on: ``localtime`` is each host's own (two
#: schedulers on different hosts would plan different instants, each firing once), ``Factory``
#: no zone at all, and the posix/ and right/ copies (right/ counts leap seconds).
_NOT_ZONES = ("localtime", "Factory", "posixrules")


def check_zone(name: str) -> str:
    """A schedule's timezone, when it is created: an IANA zone, the same on every machine."""
    if name in _NOT_ZONES or name.startswith(("posix/", "right/")):
        raise InvalidSchedule(
            f"timezone {name!r} is not the same on every machine (use an IANA name such as Europe/Berlin)"
        )
    zone(name)
    return name


def check_cron(expr: str) -> str:
    expr = " ".join(expr.split())
    if not expr.startswith("@") and len(expr.split(" ")) != 5:
        raise InvalidSchedule(f"cron {expr!r} must have five fields: minute hour day month weekday")
    if not croniter.is_valid(expr):
        raise InvalidSchedule(f"cron {expr!r} is not a valid cron expression")
    if _RANDOM.search(expr):  # croniter's R picks anew at each reading: no time is ever planned
        raise InvalidSchedule(f"cron {expr!r}: R (a random value) is not a cron field value here")
    try:
        croniter(expr, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterError:
        raise InvalidSchedule(f"cron {expr!r} names a day that never comes (such as 30 February)") from None
    return expr


_RANDOM = re.compile(r"(?i)(^|[\s,/-])R($|[\s,/(-])")


def _both_folds(expr: str) -> bool:
    if expr.startswith("@"):
        return expr == "@hourly"
    hour = expr.split(" ")[1]
    return hour == "*" or hour.startswith("*/")


#: More than any change of a zone's clocks (DST moves them one hour, a few zones two).
_CLOCK_CHANGE = timedelta(hours=2)


def times_after(expr: str, tz_name: str, after: datetime) -> Iterator[datetime]:
    """Planned times (UTC, strictly increasing) after the instant ``after``.

    Each wall time the cron walks gives its instant (the first pass of a repeated time, a missing
    time shifted by the gap) and, for hourly and more frequent crons, the second pass of a
    repeated one; they wait in a heap until no later wall time can give an earlier instant. A
    later wall time's first instant is never earlier than this one's, unless the clocks move
    forward within the next :data:`_CLOCK_CHANGE`, and then by no more than that move. So the
    second passes of a repeated hour wait until the walk has left it, and a time just after a
    forward jump (03:00 after Troll's two-hour one, 01:00 UTC) comes out before the missing
    times shifted past it (02:00, at 02:00 UTC)."""
    tz = zone(tz_name)
    both = _both_folds(expr)
    local = after.astimezone(tz)
    offset = local.utcoffset()
    if all((after + d).astimezone(tz).utcoffset() == offset for d in (-_CLOCK_CHANGE, _CLOCK_CHANGE)):
        # No change of the clocks near ``after``: the wall times after its own are the instants
        # after it (a minutely cron walked two hours, 120 steps, on every call).
        start = local.replace(tzinfo=None)
    else:  # ``after`` may lie in a repeated hour (either pass of it): walk from before it
        start = (local - _CLOCK_CHANGE).replace(tzinfo=None)
    walk = croniter(expr, start)
    last = after
    held: list[datetime] = []  # a heap of instants given by the wall times walked so far
    while True:
        try:
            wall: datetime | None = walk.get_next(datetime)
        except CroniterError:  # no such day in croniter's reach: a schedule stored before the check
            wall = None
        bound = None  # everything held may come out: the walk is over
        if wall is not None:
            zoned = wall.replace(tzinfo=tz, fold=0)  # a missing time takes the offset before the gap
            first = zoned.astimezone(UTC)
            heapq.heappush(held, first)
            if both:
                second = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
                if second > first:  # a repeated time (for a missing one, fold 1 is the earlier)
                    heapq.heappush(held, second)
            offset, ahead = zoned.utcoffset(), (first + _CLOCK_CHANGE).astimezone(tz).utcoffset()
            assert offset is not None and ahead is not None
            bound = first - max(timedelta(0), ahead - offset)
        while held and (bound is None or held[0] <= bound):
            instant = heapq.heappop(held)
            if instant > last:  # the same instant from two wall times (a gap's) comes out once
                last = instant
                yield instant
        if wall is None:
            return


def next_times(expr: str, tz_name: str, after: datetime, count: int) -> list[datetime]:
    out: list[datetime] = []
    for t in times_after(expr, tz_name, after):
        out.append(t)
        if len(out) >= count:
            break
    return out


class ScheduleState(msgspec.Struct, kw_only=True):
    schedule_id: str
    project: str = ""
    version: int = 0
    exists: bool = False
    deleted: bool = False
    paused: bool = False
    cron: str = ""
    timezone: str = "UTC"
    input: dict[str, Any] = msgspec.field(default_factory=dict)
    deployment_id: str | None = None
    environment: str = "production"
    overlap: str = "skip"
    catch_up: str = "latest"
    catch_up_limit: int = 10
    name: str | None = None
    #: Planned times at or before this instant are never fired (creation, or the last resume).
    plan_from: datetime | None = None
    last_planned_at: datetime | None = None
    last_run_id: str | None = None
    #: When the last ``schedule.fired`` was written (wall clock of its writer).
    last_fired_at: datetime | None = None
    fired: int = 0

    @property
    def active(self) -> bool:
        return self.exists and not self.deleted and not self.paused

    def horizon(self) -> datetime:
        """Planned times after this instant may still fire."""
        assert self.plan_from is not None
        if self.last_planned_at and self.last_planned_at > self.plan_from:
            return self.last_planned_at
        return self.plan_from

    def upcoming(self, now: datetime, count: int = 3) -> list[datetime]:
        if not self.active:
            return []
        return next_times(self.cron, self.timezone, max(now, self.horizon()), count)


def evolve_schedule(state: ScheduleState, rec: Recorded) -> ScheduleState:
    e, d = rec.event, rec.event.data
    state.version = rec.seq
    state.project = e.project
    if isinstance(d, ScheduleCreated):
        state.exists, state.plan_from = True, e.time
        state.cron, state.timezone, state.input = d.cron, d.timezone, d.input
        state.deployment_id, state.environment, state.name = d.deployment_id, d.environment, d.name
        state.overlap, state.catch_up, state.catch_up_limit = d.overlap, d.catch_up, d.catch_up_limit
    elif isinstance(d, SchedulePaused):
        state.paused = True
    elif isinstance(d, ScheduleResumed):
        state.paused, state.plan_from = False, e.time
    elif isinstance(d, ScheduleDeleted):
        state.deleted = True
    elif isinstance(d, ScheduleFired):
        if state.last_planned_at is None or d.planned_at > state.last_planned_at:
            state.last_planned_at = d.planned_at
        if d.run_id:
            state.last_run_id = d.run_id
        state.last_fired_at = e.time
        state.fired += 1
    return state


def fold_schedule(schedule_id: str, history: list[Recorded]) -> ScheduleState:
    state = ScheduleState(schedule_id=schedule_id)
    for rec in history:
        evolve_schedule(state, rec)
    return state


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """``fire``: start a run for ``planned_at``; ``skip``: consume it without a run; ``wait``:
    nothing now (``wake_at``: the next planned time, if any)."""

    action: Literal["fire", "skip", "wait"]
    planned_at: datetime | None = None
    missed: int = 0
    reason: str | None = None
    wake_at: datetime | None = None


def due(state: ScheduleState, now: datetime) -> tuple[list[datetime], datetime | None]:
    """Planned times due by ``now`` (oldest first, at most :data:`MAX_SCAN`) and the next one."""
    # A deque drops the oldest itself: trimming a list copied MAX_SCAN times on every step past
    # it (a minutely schedule a year down: half a million copies of 20,000, over a minute).
    out: deque[datetime] = deque(maxlen=MAX_SCAN)
    for t in times_after(state.cron, state.timezone, state.horizon()):
        if t > now:
            return list(out), t
        out.append(t)
    return list(out), None  # a cron whose days never come (refused since; one may be in the stream)


#: What :func:`due` found: the planned times due (oldest first) and the next one.
Due = tuple[list[datetime], datetime | None]


def decide(
    state: ScheduleState, now: datetime, *, previous_run_active: bool, found: Due | None = None
) -> Decision:
    """One step of a schedule: what to do about its oldest planned time that may still fire.
    ``found``: what :func:`due` found for ``state`` and ``now`` (a walk of the cron from the
    schedule's horizon, as long as its gap: a caller firing several times in a row walks once)."""
    if not state.active:
        return Decision(action="wait")
    times, upcoming = found if found is not None else due(state, now)
    if not times:
        return Decision(action="wait", wake_at=upcoming)
    keep = 1 if state.catch_up == "latest" else max(1, state.catch_up_limit)
    fire_now, missed = times[-keep:][0], max(0, len(times) - keep)
    if previous_run_active:
        if state.overlap == "queue":
            return Decision(action="wait", wake_at=None)  # after the previous run ends
        if state.overlap == "skip":
            return Decision(
                action="skip", planned_at=fire_now, missed=missed, reason="the previous run is still going"
            )
    return Decision(action="fire", planned_at=fire_now, missed=missed)
