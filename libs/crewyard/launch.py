"""Starting a run from outside the HTTP API's ``POST /v1/runs``: which version a project runs
in an environment now, and appending its ``run.queued`` (used by the scheduler, which has the
stream but no read model; the gateway's trigger route uses the same append).

Which version runs is decided by the core's rules over the stream (:mod:`crewyard.versions`).
"""

from __future__ import annotations

from typing import Any

import msgspec

from crewyard.core.events import RunQueued, make_event
from crewyard.core.ids import derived_id
from crewyard.core.versions import Resolved, VersionError, check_environment
from crewyard.errors import CrewyardError
from crewyard.eventstore import ConcurrencyConflict, EventStore
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
) -> int | None:
    """Append the run's ``run.queued``; None when the run already exists (the append is keyed on
    the run id — its event id is derived from it and the run must be new — so a repeat after a
    crash starts nothing twice)."""
    event = make_event(
        RunQueued(
            deployment_id=deployment_id,
            input=input,
            environment=check_environment(environment),
            version_number=version_number,
        ),
        project=project,
        aggregate_id=run_id,
        event_id=derived_id("evt", int(run_id_time(run_id)), "run.queued", run_id),
        correlation_id=correlation_id,
    )
    try:
        return await store.append(event, expected_seq=0)
    except ConcurrencyConflict:
        return None


def run_id_time(run_id: str) -> int:
    """The milliseconds a ``run_…`` id was made at (its first 10 base32 characters)."""
    alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
    value = 0
    for ch in run_id.split("_", 1)[1][:10]:
        value = value * 32 + alphabet.index(ch)
    return value
