"""The projector's handlers on their own: events in, the rows the API answers from out (read
through the read side's own queries), with no broker in between."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crewyard.core.events import (
    ArtifactStored,
    DeploymentCreated,
    DeploymentPromoted,
    DeploymentReady,
    EnvSet,
    EnvUnset,
    Payload,
    ProjectCreated,
    ProjectLimitsSet,
    RunCancelRequested,
    RunCompleted,
    RunQueued,
    RunRetrying,
    RunStarted,
    make_event,
)
from crewyard.projector.handlers import HANDLERS
from crewyard.readmodel import ReadModel

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SHA = "ab" * 32


class Applier:
    def __init__(self, rm: ReadModel) -> None:
        self.rm, self.seq = rm, 0

    async def __call__(self, payload: Payload, aggregate_id: str, *, after_s: float = 0.0) -> None:
        self.seq += 1
        event = make_event(
            payload,
            project="acme",
            aggregate_id=aggregate_id,
            event_id=f"evt_{self.seq:04d}",
            time=T0 + timedelta(seconds=after_s),
        )
        await HANDLERS[event.type](self.rm.db, self.seq, event)


@pytest.fixture
async def rm(tmp_path: Path) -> AsyncIterator[ReadModel]:
    model = await ReadModel.open(tmp_path / "rm.sqlite3")
    yield model
    await model.close()


async def _deployed(apply: Applier) -> None:
    await apply(ProjectCreated(name="acme"), "acme")
    created = DeploymentCreated(source_digest="sha256-" + SHA, source_size=10, config={"framework": "python"})
    await apply(created, "dep_1")
    await apply(DeploymentReady(env_digest="env", backend="venv", cached=True, duration_ms=5), "dep_1")
    await apply(DeploymentPromoted(deployment_id="dep_1"), "acme")


async def test_a_retried_run_that_succeeds_reads_as_the_api_shows_it(rm: ReadModel):
    apply = Applier(rm)
    await _deployed(apply)
    await apply(RunQueued(deployment_id="dep_1", input={"topic": "AI"}), "run_1")
    await apply(RunStarted(runner_id="r1", backend="bwrap", isolated=True, attempt=1), "run_1", after_s=1)
    await apply(
        RunRetrying(attempt=1, reason="runner_stopped", error_message="handed back", delay_s=0),
        "run_1",
        after_s=2,
    )
    assert (await rm.run("run_1") or {})["status"] == "pending"
    await apply(RunStarted(runner_id="r2", backend="bwrap", isolated=True, attempt=2), "run_1", after_s=3)
    await apply(
        ArtifactStored(name="out/report.md", size=3, content_type="text/markdown", sha256=SHA), "run_1"
    )
    await apply(RunCompleted(output={"answer": 42}, duration_ms=1500), "run_1", after_s=5)

    run = await rm.run("run_1")
    assert run is not None
    assert (run["status"], run["attempt"], run["backend"], run["isolated"]) == ("succeeded", 2, "bwrap", True)
    assert (run["duration_ms"], bytes(run["output"])) == (1500, b'{"answer":42}')
    assert (run["error_message"], run["error_reason"]) == (None, None)
    assert [a["name"] for a in await rm.artifacts("run_1")] == ["out/report.md"]
    assert await rm.run_counts() == {("succeeded", "bwrap"): 1}


async def test_cancel_requested_is_noted_and_the_deployment_is_current(rm: ReadModel):
    apply = Applier(rm)
    await _deployed(apply)
    await apply(RunQueued(deployment_id="dep_1", input={}), "run_2")
    await apply(RunCancelRequested(), "run_2")
    run = await rm.run("run_2")
    assert run is not None and run["cancel_requested"] is True and run["status"] == "pending"
    dep = await rm.deployment("dep_1")
    assert dep is not None and (dep["status"], dep["current"], dep["cached"]) == ("ready", True, True)


async def test_env_and_limits_follow_their_events(rm: ReadModel):
    apply = Applier(rm)
    await apply(ProjectCreated(name="acme"), "acme")
    await apply(EnvSet(key="API_TOKEN", value="sealed"), "acme")
    await apply(EnvSet(key="MODEL", value="sealed"), "acme")
    await apply(EnvUnset(key="API_TOKEN"), "acme")
    await apply(ProjectLimitsSet(max_concurrent_runs=3), "acme")
    assert [e["key"] for e in await rm.env("acme")] == ["MODEL"]
    project = await rm.project("acme")
    assert project is not None and project["max_concurrent_runs"] == 3
