"""Following the stream for changes that make warm sandboxes stale, so that pools refill in time.

What a run sees is decided when its runner picks it up (its fingerprint, ``specs.py``), and a run
never takes a sandbox prepared differently: that alone keeps runs from seeing old values. This
follower makes the *next* run warm as well: as soon as a project's environment variables or
limits change, its pools are retired and prepared again with the new values; when a deploy,
promote or rollback moves an environment to another version, that environment's pools move
with it.
"""

from __future__ import annotations

import asyncio
import logging

from crewyard.core import subjects
from crewyard.core.events import DeploymentCreated, DeploymentPromoted, InvalidEvent
from crewyard.eventstore import EventStore, RawEvent, StoreUnavailable, set_aside

from .pools import Pools

log = logging.getLogger("crewyard.runner")

#: Project events after which the project's runs may see something else.
RETIRING = ("env.set", "env.unset", "project.limits_set")


async def follow_changes(store: EventStore, pools: Pools, stop: asyncio.Event) -> None:
    """Until ``stop``: retire and move pools as the project events and finished builds say."""
    await asyncio.gather(
        _follow(store, f"{store.prefix}.*.project.*.>", pools, stop),
        _follow(store, subjects.type_filter("deployment.ready", "deployment", store.prefix), pools, stop),
    )


async def _follow(store: EventStore, filter_subject: str, pools: Pools, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            start = await store.last_seq() + 1
            async with store.follow(filter_subject, start_seq=start) as queue:
                while not stop.is_set():
                    raw = await queue.get()
                    if pools.pools:  # nothing to retire while no deployment is warm
                        await _apply(store, pools, raw)
        except StoreUnavailable:
            await asyncio.sleep(1.0)


async def _apply(store: EventStore, pools: Pools, raw: RawEvent) -> None:
    _scope, aggregate, aggregate_id, event_type = subjects.parse_subject(raw.subject, store.prefix)
    if aggregate == "project" and event_type in RETIRING:
        pools.retire(aggregate_id, f"{event_type} in project {aggregate_id}")
        return
    if event_type not in ("deployment.promoted", "deployment.ready"):
        return
    try:
        event = raw.decode(store.prefix).event
    except InvalidEvent as exc:
        set_aside("runner pools", raw.seq, raw.subject, exc)
        return
    data = event.data
    if isinstance(data, DeploymentPromoted):
        name = data.name or await _name_of(store, event.project, data.deployment_id)
        if name is not None:
            pools.move(event.project, name, data.environment, data.deployment_id)
        return
    # A finished build moves the environment it was aimed at, if any.
    created = await _created(store, event.project, event.aggregate_id)
    if created is not None and created.environment is not None:
        pools.move(event.project, created.name, created.environment, event.aggregate_id)


async def _created(store: EventStore, project: str, deployment_id: str) -> DeploymentCreated | None:
    for rec in await store.load(project, "deployment", deployment_id):
        if isinstance(rec.event.data, DeploymentCreated):
            return rec.event.data
    return None


async def _name_of(store: EventStore, project: str, deployment_id: str) -> str | None:
    created = await _created(store, project, deployment_id)
    return created.name if created is not None else None
