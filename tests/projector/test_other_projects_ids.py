"""An event changes rows of its own project only: an event of one project that names an id of
another project's thread, run, deployment, table, webhook, delivery, trigger or schedule leaves
the whole read model as it was (ids are random, but whoever may write one project's events can
write any id into them). The project's own events still change its rows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from crewyard.core.events import (
    ArtifactStored,
    BuildStarted,
    DeliveryAttempted,
    DeliveryQueued,
    DeliveryRedeliveryRequested,
    DeploymentCreated,
    DeploymentFailed,
    DeploymentReady,
    Payload,
    ProjectCreated,
    RowDeleted,
    RowsInserted,
    RowUpdated,
    RunCanceled,
    RunCancelRequested,
    RunCompleted,
    RunFailed,
    RunQueued,
    RunRetrying,
    RunStarted,
    ScheduleCreated,
    ScheduleDeleted,
    ScheduleFired,
    SchedulePaused,
    ScheduleResumed,
    TableCreated,
    TableDeleted,
    TableUpdated,
    ThreadCheckpointed,
    ThreadCreated,
    ThreadDeleted,
    ThreadRunAccepted,
    ThreadRunEnded,
    TriggerCreated,
    TriggerRevoked,
    WebhookCreated,
    WebhookDeleted,
    WebhookDisabled,
    WebhookEnabled,
    WebhookSecretRotated,
    WebhookUpdated,
    make_event,
)
from crewyard.core.events.table import NewRow
from crewyard.core.tables import Column
from crewyard.projector.handlers import HANDLERS
from crewyard.readmodel import ReadModel

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SHA = "ab" * 32
CONFIG = {"entrypoint": "crew:run"}


class Projects:
    """Events of any project, applied in one sequence straight to the projector's handlers."""

    def __init__(self, rm: ReadModel) -> None:
        self.rm, self.seq = rm, 0

    async def __call__(self, project: str, payload: Payload, aggregate_id: str) -> None:
        self.seq += 1
        at = T0 + timedelta(seconds=self.seq)  # each event's own time: a touch is a change
        event = make_event(
            payload, project=project, aggregate_id=aggregate_id, event_id=f"evt_{self.seq:04d}", time=at
        )
        await HANDLERS[event.type](self.rm.db, self.seq, event)


@pytest.fixture
async def rm(tmp_path: Path) -> AsyncIterator[ReadModel]:
    model = await ReadModel.open(tmp_path / "rm.sqlite3")
    yield model
    await model.close()


async def _snapshot(rm: ReadModel) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the read model."""
    async with rm.db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name") as cur:
        tables = [r["name"] if isinstance(r, dict) else r[0] for r in await cur.fetchall()]
    out: dict[str, list[tuple[Any, ...]]] = {}
    for table in tables:
        async with rm.db.execute(f"SELECT * FROM {table}") as cur:
            rows = [tuple(r.values()) if isinstance(r, dict) else tuple(r) for r in await cur.fetchall()]
        out[table] = sorted(rows, key=repr)
    return out


async def _unchanged_by(rm: ReadModel, apply: Projects, events: list[tuple[Payload, str]]) -> None:
    """Apply each of another project's events; none changes the read model (all are tried, and
    the assertion names every one that did)."""
    changed = []
    for payload, aggregate_id in events:
        before = await _snapshot(rm)
        await apply("rival", payload, aggregate_id)
        if await _snapshot(rm) != before:
            changed.append(payload.TYPE)
    assert changed == [], f"another project's events changed acme's rows: {changed}"


async def test_another_projects_thread_events_leave_a_thread_as_it_was(rm: ReadModel) -> None:
    apply = Projects(rm)
    await apply("acme", ThreadCreated(values={"n": 0}, checkpoint_id="cp_0"), "thr_1")
    await apply("acme", ThreadRunAccepted(run_id="run_1"), "thr_1")
    await apply("acme", ThreadCheckpointed(checkpoint_id="cp_1", run_id="run_1", values={"n": 1}), "thr_1")
    await _unchanged_by(
        rm,
        apply,
        [
            (ThreadCreated(values={"x": 1}, checkpoint_id="cp_x"), "thr_1"),
            (ThreadRunAccepted(run_id="run_x"), "thr_1"),
            (ThreadCheckpointed(checkpoint_id="cp_x", run_id="run_1", values={"x": 1}), "thr_1"),
            (ThreadRunEnded(run_id="run_1", status="error"), "thr_1"),
            (ThreadDeleted(), "thr_1"),
        ],
    )
    # The thread's own project still moves it.
    await apply("acme", ThreadRunEnded(run_id="run_1", status="idle"), "thr_1")
    thread = await rm.thread("thr_1")
    assert thread is not None and thread["status"] == "idle" and thread["project"] == "acme"
    await apply("acme", ThreadDeleted(), "thr_1")
    assert await rm.thread("thr_1") is None
    assert (await _snapshot(rm))["thread_checkpoints"] == []


async def _acme(apply: Projects) -> None:
    """One of each kind of row in project acme: a version still building and a ready one, a
    pending run with an artifact, a table with a row, a webhook with a delivery, a trigger and a
    schedule."""
    await apply("acme", ProjectCreated(name="acme"), "acme")
    for dep in ("dep_1", "dep_2"):
        await apply(
            "acme", DeploymentCreated(source_digest="sha256-" + SHA, source_size=1, config=CONFIG), dep
        )
    await apply("acme", DeploymentReady(env_digest="e", backend="venv"), "dep_2")
    await apply("acme", RunQueued(deployment_id="dep_2", input={}), "run_1")
    await apply("acme", ArtifactStored(name="out.md", size=1, content_type="text/plain", sha256=SHA), "run_1")
    await apply("acme", TableCreated(name="t", columns=[Column(name="x", type="text")]), "tbl_1")
    await apply("acme", RowsInserted(rows=[NewRow(id="row_1", values={"x": "a"})]), "tbl_1")
    await apply("acme", WebhookCreated(url="https://example.com/h", events=["run.*"], secret="s"), "wh_1")
    queued = DeliveryQueued(
        webhook_id="wh_1",
        delivery_id="dlv_1",
        event="run.succeeded",
        source_event_id="evt_x",
        source_seq=1,
        source_type="run.completed",
        source_aggregate="run",
        source_id="run_1",
    )
    await apply("acme", queued, "grp_1")
    await apply("acme", TriggerCreated(name="hook", token_sha256=SHA), "trg_1")
    await apply("acme", ScheduleCreated(cron="0 * * * *", timezone="UTC", input={}), "sch_1")


async def test_another_projects_events_leave_every_kind_of_row_as_it_was(rm: ReadModel) -> None:
    apply = Projects(rm)
    await _acme(apply)
    await apply("acme", WebhookDisabled(reason="paused"), "wh_1")  # so that enabling it is a change
    await apply("acme", SchedulePaused(), "sch_1")  # and resuming this
    await _unchanged_by(
        rm,
        apply,
        [
            (BuildStarted(builder_id="b", backend="docker"), "dep_1"),
            (DeploymentReady(env_digest="x", backend="docker"), "dep_1"),
            (DeploymentFailed(error_message="no"), "dep_1"),
            (RunStarted(runner_id="r", backend="docker", isolated=False), "run_1"),
            (RunRetrying(attempt=1, reason="x", error_message="x"), "run_1"),
            (RunCancelRequested(), "run_1"),
            (RunCompleted(output={"x": 1}), "run_1"),
            (RunFailed(error_message="x"), "run_1"),
            (RunCanceled(), "run_1"),
            (ArtifactStored(name="out.md", size=9, content_type="text/html", sha256="cd" * 32), "run_1"),
            (ArtifactStored(name="other.md", size=9, content_type="text/html", sha256="cd" * 32), "run_1"),
            (TableUpdated(name="u", columns=[Column(name="y", type="text")]), "tbl_1"),
            (RowsInserted(rows=[NewRow(id="row_2", values={"x": "b"})]), "tbl_1"),
            (RowUpdated(row_id="row_1", values={"x": "b"}), "tbl_1"),
            (RowDeleted(row_id="row_1"), "tbl_1"),
            (TableDeleted(), "tbl_1"),
            (WebhookUpdated(url="https://example.org/h", events=["run.*"]), "wh_1"),
            (WebhookSecretRotated(secret="t"), "wh_1"),
            (WebhookEnabled(), "wh_1"),
            (WebhookDisabled(reason="x"), "wh_1"),
            (WebhookDeleted(), "wh_1"),
            (DeliveryAttempted(webhook_id="wh_1", delivery_id="dlv_1", attempt=1, outcome="failed"), "grp_2"),
            (DeliveryRedeliveryRequested(webhook_id="wh_1", delivery_id="dlv_1"), "grp_2"),
            (TriggerRevoked(), "trg_1"),
            (ScheduleResumed(), "sch_1"),
            (SchedulePaused(), "sch_1"),
            (ScheduleFired(planned_at=T0, outcome="queued", run_id="run_x"), "sch_1"),
            (ScheduleDeleted(), "sch_1"),
        ],
    )
    # A run of another project naming acme's version does not take that version's number.
    await apply("rival", RunQueued(deployment_id="dep_2", input={}), "run_2")
    rival_run = await rm.run("run_2")
    assert rival_run is not None and rival_run["project"] == "rival" and rival_run["version_number"] is None
    # acme's own events still change its rows.
    await apply("acme", RunStarted(runner_id="r", backend="docker", isolated=False), "run_1")
    await apply("acme", DeploymentFailed(error_message="no"), "dep_1")
    await apply(
        "acme",
        DeliveryAttempted(webhook_id="wh_1", delivery_id="dlv_1", attempt=1, outcome="failed"),
        "grp_1",
    )
    await apply("acme", ScheduleDeleted(), "sch_1")
    run, dep = await rm.run("run_1"), await rm.deployment("dep_1")
    assert run is not None and run["status"] == "running"
    assert dep is not None and dep["status"] == "failed"
    delivery, schedule = await rm.delivery("dlv_1"), await rm.schedule("sch_1")
    assert delivery is not None and delivery["status"] == "failed" and delivery["attempts"] == 1
    assert schedule is None  # deleted
