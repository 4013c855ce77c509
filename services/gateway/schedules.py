"""Schedules: create, list, read, pause, resume, delete; the next planned times come from the
schedule's cron, timezone and what it last fired (the scheduler service does the firing)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from litestar import Request, delete, get, post

from crewyard.contract.common import Deleted, NoFields
from crewyard.contract.schedules import Schedule, ScheduleCreate, ScheduleList
from crewyard.core.events import Payload, ScheduleCreated, ScheduleDeleted, SchedulePaused, ScheduleResumed
from crewyard.core.ids import is_id, new_id
from crewyard.core.schedules import (
    InvalidSchedule,
    ScheduleState,
    check_cron,
    check_zone,
    fold_schedule,
    next_times,
)
from crewyard.core.versions import check_environment
from crewyard.eventstore import ConcurrencyConflict, StoreUnavailable

from .context import Gateway, gw, project_name
from .errors import bad_request, check_input_size, conflict, not_found
from .openapi import OptionalBody

DEPLOY, READ = {"role": "deploy"}, {"role": "read"}
_json = msgspec.json.Decoder()


#: A planned time this recent that the scheduler has not handled yet is still shown as next: it
#: is about to fire (a schedule made at 14:50:59.999 fires at 14:51:00, which its answer, made a
#: few milliseconds later, must show).
DUE_SHOWN = timedelta(seconds=5)


def schedule_view(row: dict[str, Any], now: datetime) -> Schedule:
    paused = bool(row["paused"])
    horizon = max(filter(None, (row["plan_from"], row["last_planned_at"])))
    after = max(now - DUE_SHOWN, datetime.fromisoformat(horizon))
    try:
        upcoming = [] if paused else next_times(row["cron"], row["timezone"], after, 3)
    except InvalidSchedule:  # a zone this machine's tzdata lacks (another gateway accepted it)
        upcoming = []
    return Schedule(
        id=row["id"],
        project=row["project"],
        name=row["name"],
        cron=row["cron"],
        timezone=row["timezone"],
        input=_json.decode(row["input"]),
        deployment_id=row["deployment_id"],
        environment=row["environment"],
        overlap=row["overlap"],
        catch_up=row["catch_up"],
        catch_up_limit=row["catch_up_limit"],
        status="paused" if paused else "active",
        created_at=row["created_at"],
        next_fire_times=[t.isoformat() for t in upcoming],
        last_planned_at=row["last_planned_at"],
        last_run_id=row["last_run_id"],
        fired=row["fired"],
    )


async def _row(g: Gateway, project: str, schedule_id: str) -> dict[str, Any]:
    row = await g.rm.schedule(schedule_id)
    if row is None:
        await g.fresh()
        row = await g.rm.schedule(schedule_id)
    if row is None or row["project"] != project:
        raise not_found(f"schedule {schedule_id}")
    return row


@post("/v1/projects/{project:str}/schedules", status_code=201, opt=DEPLOY)
async def create_schedule(request: Request[Any, Any, Any], project: str, data: ScheduleCreate) -> Schedule:
    """Create a schedule: from now on, a run at every planned time of ``cron`` in ``timezone``."""
    g = gw(request)
    project = project_name(project)
    await g.project(project)
    try:
        cron = check_cron(data.cron)
        check_zone(data.timezone)
    except InvalidSchedule as exc:
        raise bad_request(str(exc), "invalid_schedule") from None
    check_environment(data.environment)
    check_input_size(data.input)
    if data.deployment is not None:
        dep = await g.deployment(data.deployment)
        if dep["project"] != project:
            raise not_found(f"deployment {data.deployment}")
    schedule_id = new_id("sch")
    payload = ScheduleCreated(
        cron=cron,
        timezone=data.timezone,
        input=data.input,
        deployment_id=data.deployment,
        environment=data.environment,
        overlap=data.overlap,
        catch_up=data.catch_up,
        catch_up_limit=data.catch_up_limit,
        name=data.name,
    )
    await g.create_counted(payload, project, schedule_id, g.settings.max_schedules)
    row = await g.rm.schedule(schedule_id)
    if row is None:  # this gateway's read model is behind: a 404 made clients create it again
        row = await _stored_row(g, project, schedule_id, payload)
    return schedule_view(row, datetime.now(UTC))


async def _stored_row(g: Gateway, project: str, schedule_id: str, payload: ScheduleCreated) -> dict[str, Any]:
    """The read model's row of a schedule just created, from what was stored (as the projector
    would write it)."""
    try:
        stored = await g.store.load(project, "schedule", schedule_id, types=ScheduleCreated.TYPE)
    except StoreUnavailable:  # the creation is done: a 503 now would have a client make another
        stored = []
    # Not found on a replica that is behind (or not read): it was stored, so its time is about now.
    at = (stored[0].event.time if stored else datetime.now(UTC)).isoformat()
    return {
        **msgspec.structs.asdict(payload),
        "id": schedule_id,
        "project": project,
        "input": msgspec.json.encode(payload.input),
        "paused": 0,
        "created_at": at,
        "plan_from": at,
        "last_planned_at": None,
        "last_run_id": None,
        "fired": 0,
    }


@get("/v1/projects/{project:str}/schedules", opt=READ)
async def list_schedules(request: Request[Any, Any, Any], project: str) -> ScheduleList:
    g = gw(request)
    project = project_name(project)
    await g.project(project)
    now = datetime.now(UTC)
    return ScheduleList(schedules=[schedule_view(r, now) for r in await g.rm.schedules(project)])


@get("/v1/projects/{project:str}/schedules/{schedule_id:str}", opt=READ)
async def get_schedule(request: Request[Any, Any, Any], project: str, schedule_id: str) -> Schedule:
    g = gw(request)
    return schedule_view(await _row(g, project_name(project), schedule_id), datetime.now(UTC))


async def change_schedule(g: Gateway, project: str, schedule_id: str, decide: Any) -> None:
    for _ in range(5):
        history = await g.store.load(project, "schedule", schedule_id) if is_id(schedule_id, "sch") else []
        state: ScheduleState = fold_schedule(schedule_id, history)
        if not state.exists or state.deleted:
            raise not_found(f"schedule {schedule_id}")
        payload: Payload | None = decide(state)
        if payload is None:
            return
        try:
            await g.commit_payload(payload, project, schedule_id, state.version)
        except ConcurrencyConflict:
            continue  # a scheduler fired meanwhile: decide again
        return
    raise conflict("the schedule kept changing; try again")


@post(
    "/v1/projects/{project:str}/schedules/{schedule_id:str}/pause",
    status_code=200,
    opt=DEPLOY,
    operation_class=OptionalBody,
)
async def pause_schedule(
    request: Request[Any, Any, Any], project: str, schedule_id: str, data: NoFields | None = None
) -> Schedule:
    """Stop firing; planned times while paused are never fired."""
    g = gw(request)
    project = project_name(project)
    await change_schedule(g, project, schedule_id, lambda s: None if s.paused else SchedulePaused())
    await g.fresh()
    return schedule_view(await _row(g, project, schedule_id), datetime.now(UTC))


@post(
    "/v1/projects/{project:str}/schedules/{schedule_id:str}/resume",
    status_code=200,
    opt=DEPLOY,
    operation_class=OptionalBody,
)
async def resume_schedule(
    request: Request[Any, Any, Any], project: str, schedule_id: str, data: NoFields | None = None
) -> Schedule:
    """Fire again from the next planned time after now."""
    g = gw(request)
    project = project_name(project)
    await change_schedule(g, project, schedule_id, lambda s: ScheduleResumed() if s.paused else None)
    await g.fresh()
    return schedule_view(await _row(g, project, schedule_id), datetime.now(UTC))


@delete("/v1/projects/{project:str}/schedules/{schedule_id:str}", status_code=200, opt=DEPLOY)
async def delete_schedule(request: Request[Any, Any, Any], project: str, schedule_id: str) -> Deleted:
    g = gw(request)
    project = project_name(project)
    await change_schedule(g, project, schedule_id, lambda _s: ScheduleDeleted())
    return Deleted(id=schedule_id)


ROUTES = [create_schedule, list_schedules, get_schedule, pause_schedule, resume_schedule, delete_schedule]
