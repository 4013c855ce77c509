"""Starting a run from outside the HTTP API's ``POST /v1/runs``: which version a project runs
in an environment now, and appending its ``run.queued`` (used by the scheduler, which has the
stream but no read model; the gateway's trigger route uses the same append).

Which version runs is decided by the core's rules over the stream (:mod:`crewyard.versions`).
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from crewyard.core.events import RunQueued, make_event
from crewyard.core.ids import derived_id
from crewyard.core.versions import Resolved, VersionError, check_environment
from crewyard.errors import CrewyardError
from crewyard.eventstore import Appended, ConcurrencyConflict, EventStore
from crewyard.versions import resolve_version


class NoDeployment(CrewyardError):
    """Nothing to run: no ready deployment (the message says which)."""


async def ready_deployment(
    store: EventStore, project: str, deployment_id: str | None, environment: str = "production"
) -> Resolved:
    """What a trigger or schedule runs: ``deployment_id`` exactly when it is pinned (a ready
    version of ``project``), else ``environment``'s version of the project's default deployment
    name (see :mod:`crewyard.core.versions`); the run is in ``environment`` either way."""
    try:
        if deployment_id is not None:
            pinned = await resolve_version(store, project=project, deployment_id=deployment_id)
            return msgspec.structs.replace(pinned, environment=check_environment(environment))
        return await resolve_version(store, project=project, environment=environment)
    except VersionError as exc:
        raise NoDeployment(str(exc)) from None


async def queue_run(
    store: EventStore,
    *,
    project: str,
    run_id: str,
    deployment_id: str,
    input: dict[str, Any],
    correlation_id: str | None = None,
    environment: str = "production",
    version_number: int | None = None,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
) -> Appended | None:
    """Append the run's ``run.queued``; None when the run already exists (the append is keyed on
    the run id — its event id is derived from it and the run must be new — so a repeat after a
    crash starts nothing twice). With ``idempotency_key`` the event id is derived from the key
    instead: a concurrent repeat of the request is a duplicate whose ``seq`` is the original's."""
    event_id = (
        idempotent_event_id(project, idempotency_key)
        if idempotency_key
        else derived_id("evt", int(run_id_time(run_id)), "run.queued", run_id)
    )
    event = make_event(
        RunQueued(
            deployment_id=deployment_id,
            input=input,
            environment=check_environment(environment),
            version_number=version_number,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
        ),
        project=project,
        aggregate_id=run_id,
        event_id=event_id,
        correlation_id=correlation_id,
    )
    try:
        return await store.append_acked(event, expected_seq=0)
    except ConcurrencyConflict:
        return None


def idempotent_event_id(project: str, key: str) -> str:
    """The ``run.queued`` event id of every request with this Idempotency-Key: the stream drops
    a repeat made within its de-duplication window (later ones find the run in the read model)."""
    return "evt_idem_" + hashlib.sha256(f"{project}\0{key}".encode()).hexdigest()[:40]


def run_id_time(run_id: str) -> int:
    """The milliseconds a ``run_…`` id was made at (its first 10 base32 characters)."""
    alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
    value = 0
    for ch in run_id.split("_", 1)[1][:10]:
        value = value * 32 + alphabet.index(ch)
    return value
