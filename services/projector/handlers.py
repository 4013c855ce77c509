"""How each event changes the read model: one small function per event type.

Only the event (its data, time and sequence) decides what is written, never the clock, so a
rebuild from sequence 1 reproduces the read model exactly. An event changes rows of its own
project only: every statement that finds a row by id also names the event's project, so an event
of one project naming another's deployment or run id changes nothing (whoever may write a
project's events can write any id into them).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiosqlite
import msgspec

from crewyard.core.events import (
    ArtifactStored,
    BuildStarted,
    DeploymentCreated,
    DeploymentFailed,
    DeploymentPromoted,
    DeploymentReady,
    EnvSet,
    EnvUnset,
    Event,
    ProjectCreated,
    ProjectLimitsSet,
    RunCanceled,
    RunCancelRequested,
    RunCompleted,
    RunFailed,
    RunQueued,
    RunRetrying,
    RunStarted,
)
from crewyard.core.versions import DEFAULT_NAME
from crewyard.readmodel import TABLE_HANDLERS

from . import outbound, threads

Handler = Callable[[aiosqlite.Connection, int, Event], Awaitable[None]]
_json = msgspec.json.Encoder()


def _ts(event: Event) -> str:
    return event.time.isoformat()


def _dumps(value: Any) -> str:
    return _json.encode(value).decode()


async def project_created(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    await db.execute("INSERT OR IGNORE INTO projects (name, created_at) VALUES (?, ?)", (e.project, _ts(e)))


def _first(row: Any) -> Any:
    """The first column of a row, whichever row factory the connection has."""
    return next(iter(row.values())) if isinstance(row, dict) else row[0]


async def _point(db: aiosqlite.Connection, e: Event, dep_id: str, environment: str) -> None:
    """Move ``environment``'s pointer of the version's name to the version (of this project)."""
    async with db.execute(
        "SELECT name FROM deployments WHERE id = ? AND project = ?", (dep_id, e.project)
    ) as cur:
        row = await cur.fetchone()
    if row is None:
        return
    await db.execute(
        "INSERT OR REPLACE INTO environments (project, name, environment, deployment_id, updated_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (e.project, _first(row), environment, dep_id, _ts(e)),
    )
    await _refresh_current(db, e.project)


async def _refresh_current(db: aiosqlite.Connection, project: str) -> None:
    """``projects.current_deployment_id``: what a run that names only the project runs in
    production (the ``default`` name, else the only one; none when that is ambiguous)."""
    async with db.execute("SELECT DISTINCT name FROM deployments WHERE project = ?", (project,)) as cur:
        names = {_first(r) for r in await cur.fetchall()}
    name = DEFAULT_NAME if DEFAULT_NAME in names else (next(iter(names)) if len(names) == 1 else None)
    await db.execute(
        "UPDATE projects SET current_deployment_id = (SELECT deployment_id FROM environments"
        " WHERE project = ? AND name = ? AND environment = 'production') WHERE name = ?",
        (project, name, project),
    )


async def deployment_promoted(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    assert isinstance(e.data, DeploymentPromoted)
    await _point(db, e, e.data.deployment_id, e.data.environment)


async def limits_set(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    assert isinstance(e.data, ProjectLimitsSet)
    await db.execute(
        "UPDATE projects SET max_concurrent_runs = ? WHERE name = ?", (e.data.max_concurrent_runs, e.project)
    )


async def env_set(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    assert isinstance(e.data, EnvSet)
    await db.execute(
        "INSERT OR REPLACE INTO env (project, key, environment, updated_at) VALUES (?, ?, ?, ?)",
        (e.project, e.data.key, e.data.environment or "", _ts(e)),
    )


async def env_unset(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    assert isinstance(e.data, EnvUnset)
    await db.execute(
        "DELETE FROM env WHERE project = ? AND key = ? AND environment = ?",
        (e.project, e.data.key, e.data.environment or ""),
    )


async def deployment_created(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    d = e.data
    assert isinstance(d, DeploymentCreated)
    # A version's number is its place among its name's versions in the stream (never stored in
    # an event: every fold counts the same, see crewyard.core.versions).
    await db.execute(
        "INSERT OR IGNORE INTO deployments (id, project, name, version_number, environment, status,"
        " source_digest, source_size, config, created_at, idempotency_key, request_hash)"
        " VALUES (?, ?, ?, (SELECT COUNT(*) + 1 FROM deployments WHERE project = ? AND name = ?), ?,"
        " 'building', ?, ?, ?, ?, ?, ?)",
        (
            e.aggregate_id,
            e.project,
            d.name,
            e.project,
            d.name,
            d.environment,
            d.source_digest,
            d.source_size,
            _dumps(d.config),
            _ts(e),
            d.idempotency_key,
            d.request_hash,
        ),
    )
    await _refresh_current(db, e.project)  # a second name can make the project's default ambiguous


async def build_started(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    assert isinstance(e.data, BuildStarted)
    await db.execute(
        "UPDATE deployments SET build_started_at = ?, backend = ? WHERE id = ? AND project = ?",
        (_ts(e), e.data.backend, e.aggregate_id, e.project),
    )


async def deployment_ready(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    d = e.data
    assert isinstance(d, DeploymentReady)
    async with db.execute(
        "UPDATE deployments SET status = 'ready', ready_at = ?, env_digest = ?, backend = ?, image = ?,"
        " cached = ?, build_duration_ms = ? WHERE id = ? AND project = ? AND status = 'building'"
        " RETURNING environment",
        (_ts(e), d.env_digest, d.backend, d.image, int(d.cached), d.duration_ms, e.aggregate_id, e.project),
    ) as cur:
        row = await cur.fetchone()
    # The environment the deploy was aimed at now runs it (as a promotion would).
    if row is not None and _first(row):
        await _point(db, e, e.aggregate_id, _first(row))


async def deployment_failed(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    assert isinstance(e.data, DeploymentFailed)
    await db.execute(
        "UPDATE deployments SET status = 'failed', error_message = ?"
        " WHERE id = ? AND project = ? AND status = 'building'",
        (e.data.error_message, e.aggregate_id, e.project),
    )


async def run_queued(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    d = e.data
    assert isinstance(d, RunQueued)
    await db.execute(
        "INSERT OR IGNORE INTO runs (id, project, deployment_id, version_number, environment, thread_id,"
        " status, input, created_at, timeout_s, idempotency_key, request_hash, last_seq) VALUES (?, ?, ?,"
        " COALESCE(?, (SELECT version_number FROM deployments WHERE id = ? AND project = ?)),"
        " ?, ?, 'pending', ?, ?, ?, ?, ?, ?)",
        (
            e.aggregate_id,
            e.project,
            d.deployment_id,
            d.version_number,
            d.deployment_id,
            e.project,
            d.environment,
            d.thread_id,
            _dumps(d.input),
            _ts(e),
            d.timeout_s,
            d.idempotency_key,
            d.request_hash,
            seq,
        ),
    )


async def run_started(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    d = e.data
    assert isinstance(d, RunStarted)
    await db.execute(
        "UPDATE runs SET status = 'running', started_at = COALESCE(started_at, ?), attempt = ?, backend = ?,"
        " isolated = ?, runner_id = ?, last_seq = ? WHERE id = ? AND project = ?",
        (_ts(e), d.attempt, d.backend, int(d.isolated), d.runner_id, seq, e.aggregate_id, e.project),
    )


async def run_retrying(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    assert isinstance(e.data, RunRetrying)
    await db.execute(
        "UPDATE runs SET status = 'pending', runner_id = NULL, last_seq = ? WHERE id = ? AND project = ?",
        (seq, e.aggregate_id, e.project),
    )


async def run_cancel_requested(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    await db.execute(
        "UPDATE runs SET cancel_requested = 1, last_seq = ? WHERE id = ? AND project = ?",
        (seq, e.aggregate_id, e.project),
    )


async def _terminal(
    db: aiosqlite.Connection,
    seq: int,
    e: Event,
    status: str,
    output: str | None,
    error: str | None,
    reason: str | None,
    duration_ms: int,
) -> None:
    await db.execute(
        "UPDATE runs SET status = ?, output = ?, error_message = ?, error_reason = ?, completed_at = ?,"
        " duration_ms = ?, last_seq = ? WHERE id = ? AND project = ?",
        (status, output, error, reason, _ts(e), duration_ms, seq, e.aggregate_id, e.project),
    )


async def run_completed(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    d = e.data
    assert isinstance(d, RunCompleted)
    await _terminal(db, seq, e, "succeeded", _dumps(d.output), None, None, d.duration_ms)


async def run_failed(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    d = e.data
    assert isinstance(d, RunFailed)
    await _terminal(db, seq, e, "failed", None, d.error_message, d.reason, d.duration_ms)


async def run_canceled(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    d = e.data
    assert isinstance(d, RunCanceled)
    await _terminal(db, seq, e, "canceled", None, None, d.reason, d.duration_ms)


async def artifact(db: aiosqlite.Connection, seq: int, e: Event) -> None:
    d = e.data
    assert isinstance(d, ArtifactStored)
    # Artifacts have no project of their own: only a run of the event's project gets one.
    await db.execute(
        "INSERT OR REPLACE INTO artifacts (run_id, name, size, content_type, sha256, created_at)"
        " SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM runs WHERE id = ? AND project = ?)",
        (e.aggregate_id, d.name, d.size, d.content_type, d.sha256, _ts(e), e.aggregate_id, e.project),
    )


HANDLERS: dict[str, Handler] = {
    ProjectCreated.TYPE: project_created,
    DeploymentPromoted.TYPE: deployment_promoted,
    ProjectLimitsSet.TYPE: limits_set,
    EnvSet.TYPE: env_set,
    EnvUnset.TYPE: env_unset,
    DeploymentCreated.TYPE: deployment_created,
    BuildStarted.TYPE: build_started,
    DeploymentReady.TYPE: deployment_ready,
    DeploymentFailed.TYPE: deployment_failed,
    RunQueued.TYPE: run_queued,
    RunStarted.TYPE: run_started,
    RunRetrying.TYPE: run_retrying,
    RunCancelRequested.TYPE: run_cancel_requested,
    RunCompleted.TYPE: run_completed,
    RunFailed.TYPE: run_failed,
    RunCanceled.TYPE: run_canceled,
    ArtifactStored.TYPE: artifact,
    **outbound.HANDLERS,
    **TABLE_HANDLERS,
    **threads.HANDLERS,
}
