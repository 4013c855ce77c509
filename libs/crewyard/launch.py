"""Starting a run from outside the HTTP API's ``POST /v1/runs``: which deployment a project runs
now, and appending its ``run.queued`` (used by the scheduler, which has the stream but no read
model; the gateway's trigger route uses the same append).

The current deployment is the newer of the project's last ``deployment.promoted`` (rollbacks)
and its last ``deployment.ready`` (a deployment that becomes ready is current), read from the
stream with two direct gets.
"""

from __future__ import annotations

from typing import Any

from crewyard.core.deployment_state import READY, fold_deployment
from crewyard.core.events import DeploymentPromoted, InvalidEvent, RunQueued, make_event
from crewyard.core.ids import derived_id
from crewyard.errors import CrewyardError
from crewyard.eventstore import ConcurrencyConflict, EventStore, set_aside


class NoDeployment(CrewyardError):
    """Nothing to run: no ready deployment (the message says which)."""


async def current_deployment(store: EventStore, project: str) -> str | None:
    p = store.prefix
    ready = await store.load_raw(f"{p}.{project}.deployment.*.deployment.ready")
    promoted = await store.load_raw(f"{p}.{project}.project.{project}.deployment.promoted")
    best: tuple[int, str] | None = None
    for raw in ready:
        dep_id = raw.subject[len(p) + 1 :].split(".", 3)[2]
        best = max(best or (0, ""), (raw.seq, dep_id))
    for raw in promoted:
        try:
            data = raw.decode(p).event.data
        except InvalidEvent as exc:
            set_aside("launch", raw.seq, raw.subject, exc)
            continue
        if isinstance(data, DeploymentPromoted):
            best = max(best or (0, ""), (raw.seq, data.deployment_id))
    return best[1] if best else None


async def ready_deployment(store: EventStore, project: str, deployment_id: str | None) -> str:
    """``deployment_id`` if it is a ready deployment of ``project``, else the current one."""
    if deployment_id is None:
        current = await current_deployment(store, project)
        if current is None:
            raise NoDeployment(f"project {project} has no ready deployment")
        return current
    state = fold_deployment(deployment_id, await store.load(project, "deployment", deployment_id))
    if state.status != READY:
        raise NoDeployment(f"deployment {deployment_id} is not ready (status: {state.status or 'unknown'})")
    return deployment_id


async def queue_run(
    store: EventStore,
    *,
    project: str,
    run_id: str,
    deployment_id: str,
    input: dict[str, Any],
    correlation_id: str | None = None,
) -> int | None:
    """Append the run's ``run.queued``; None when the run already exists (the append is keyed on
    the run id — its event id is derived from it and the run must be new — so a repeat after a
    crash starts nothing twice)."""
    event = make_event(
        RunQueued(deployment_id=deployment_id, input=input),
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
