"""A run and a deployment as the HTTP API shows them, computed from their events alone.

Outgoing webhooks carry "the run as the API returns it" at the moment of the event; the notifier
has the stream, not the read model, so it folds the aggregate's lifecycle events up to that event.
The field names and values are the projector's (a test checks both give the same answer).
"""

from __future__ import annotations

from typing import Any

from .events import (
    BuildStarted,
    DeploymentCreated,
    DeploymentFailed,
    DeploymentReady,
    Recorded,
    RunCanceled,
    RunCancelRequested,
    RunCompleted,
    RunFailed,
    RunQueued,
    RunRetrying,
    RunStarted,
)
from .ids import version_id


def run_view(history: list[Recorded]) -> dict[str, Any]:
    view: dict[str, Any] = {}
    for rec in history:
        e, d = rec.event, rec.event.data
        ts = e.time.isoformat()
        if isinstance(d, RunQueued):
            view = {
                "id": e.aggregate_id,
                "run_id": e.aggregate_id,
                "project": e.project,
                "deployment_id": d.deployment_id,
                "version_id": version_id(d.deployment_id),
                "version_number": d.version_number,
                "environment": d.environment,
                "thread_id": d.thread_id,
                "status": "pending",
                "input": d.input,
                "output": None,
                "error_message": None,
                "error_reason": None,
                "created_at": ts,
                "started_at": None,
                "completed_at": None,
                "duration_ms": None,
                "attempt": 0,
                "backend": None,
                "isolated": None,
                "cancel_requested": False,
                "timeout_s": d.timeout_s,
            }
        elif not view:
            continue
        elif isinstance(d, RunStarted):
            view.update(status="running", attempt=d.attempt, backend=d.backend, isolated=d.isolated)
            view["started_at"] = view["started_at"] or ts
        elif isinstance(d, RunRetrying):
            view["status"] = "pending"
        elif isinstance(d, RunCancelRequested):
            view["cancel_requested"] = True
        elif isinstance(d, RunCompleted):
            view.update(status="succeeded", output=d.output, error_message=None, error_reason=None)
            view.update(completed_at=ts, duration_ms=d.duration_ms)
        elif isinstance(d, RunFailed):
            view.update(status="failed", output=None, error_message=d.error_message, error_reason=d.reason)
            view.update(completed_at=ts, duration_ms=d.duration_ms)
        elif isinstance(d, RunCanceled):
            view.update(status="canceled", output=None, error_message=None, error_reason=d.reason)
            view.update(completed_at=ts, duration_ms=d.duration_ms)
    return view


def deployment_view(history: list[Recorded], version_number: int | None = None) -> dict[str, Any]:
    """``environments`` and ``current`` are what they were at that moment: a version that becomes
    ready runs in the environment its deploy named. ``version_number`` is the version's place
    among its name's versions (not in its own events: see :mod:`.versions`)."""
    view: dict[str, Any] = {}
    for rec in history:
        e, d = rec.event, rec.event.data
        if isinstance(d, DeploymentCreated):
            view = {
                "deployment_id": e.aggregate_id,
                "id": e.aggregate_id,
                "version_id": version_id(e.aggregate_id),
                "version_number": version_number,
                "project": e.project,
                "name": d.name,
                "status": "building",
                "environment": d.environment,
                "environments": [],
                "current": False,
                "source_digest": d.source_digest,
                "source_size": d.source_size,
                "config": d.config,
                "created_at": e.time.isoformat(),
                "ready_at": None,
                "backend": None,
                "image": None,
                "env_digest": None,
                "cached": None,
                "build_duration_ms": None,
                "error_message": None,
            }
        elif not view:
            continue
        elif isinstance(d, BuildStarted):
            view["backend"] = d.backend
        elif isinstance(d, DeploymentReady):
            moved = [view["environment"]] if view["environment"] else []
            view.update(environments=moved, current="production" in moved)
            view.update(status="ready", ready_at=e.time.isoformat(), env_digest=d.env_digest)
            view.update(backend=d.backend, image=d.image, cached=d.cached, build_duration_ms=d.duration_ms)
        elif isinstance(d, DeploymentFailed):
            view.update(status="failed", error_message=d.error_message)
    return view
