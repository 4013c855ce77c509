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
    RowDeleted,
    RowsInserted,
    RowUpdated,
    RunCancelRequested,
    RunCompleted,
    RunQueued,
    RunRetrying,
    RunStarted,
    TableCreated,
    TableDeleted,
    make_event,
)
from crewyard.core.events.table import NewRow
from crewyard.core.tables import Column
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
        self.last = (self.seq, event)
        await HANDLERS[event.type](self.rm.db, self.seq, event)

    async def again(self) -> None:
        """The last event applied once more, at its own sequence (a reader that folds it twice)."""
        seq, event = self.last
        await HANDLERS[event.type](self.rm.db, seq, event)


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


async def test_a_tables_row_count_is_its_rows_after_every_kind_of_row_event(rm: ReadModel):
    """The count moves by what each event changed (no recount): inserts of new and of existing
    rows, updates, deletes of rows there and gone, and every event applied a second time."""
    apply = Applier(rm)

    async def counted() -> int:
        async with rm.db.execute("SELECT COUNT(*) AS n FROM table_rows WHERE table_id = 'tbl_1'") as cur:
            rows = (await cur.fetchone() or {})["n"]
        table = await rm.table("tbl_1")
        assert table is not None and table["row_count"] == rows
        return int(rows)

    def rows(*ids: str) -> RowsInserted:
        return RowsInserted(rows=[NewRow(id=i, values={"n": 1}) for i in ids], idempotency_key=ids[0])

    await apply(TableCreated(name="leads", columns=[Column(name="n", type="number")]), "tbl_1")
    await apply(rows("row_a", "row_b", "row_c", "row_a"), "tbl_1")  # a row twice in one event
    assert await counted() == 3
    await apply.again()
    assert await counted() == 3
    await apply(rows("row_c", "row_d"), "tbl_1")  # one there already, one new
    assert await counted() == 4
    await apply(RowUpdated(row_id="row_b", values={"n": 2}), "tbl_1")
    await apply.again()
    await apply(RowUpdated(row_id="row_x", values={"n": 2}), "tbl_1")  # a row that never was
    assert await counted() == 4
    await apply(RowDeleted(row_id="row_a"), "tbl_1")
    assert await counted() == 3
    await apply.again()
    await apply(RowDeleted(row_id="row_x"), "tbl_1")
    assert await counted() == 3
    await apply(rows("row_a"), "tbl_1")  # a deleted row's id inserted again
    assert await counted() == 4
    await apply(TableDeleted(), "tbl_1")
    await apply.again()
    await apply(rows("row_e"), "tbl_1")  # written as the table was being deleted
    async with rm.db.execute("SELECT row_count FROM tables WHERE id = 'tbl_1'") as cur:
        assert (await cur.fetchone() or {})["row_count"] == 0


async def test_a_row_events_work_does_not_grow_with_its_table(rm: ReadModel):
    """The projector applies every project's events one at a time: one row written to a big table
    costs what it costs in a small one (SQLite's own count of the steps it ran, not a clock)."""
    apply = Applier(rm)
    steps = 0

    def step() -> int:
        nonlocal steps
        steps += 1
        return 0  # go on

    async def cost(payload: Payload) -> int:
        nonlocal steps
        steps = 0
        await rm.db.set_progress_handler(step, 1)
        try:
            await apply(payload, "tbl_1")
        finally:
            await rm.db.set_progress_handler(None, 1)
        return steps

    await apply(TableCreated(name="leads", columns=[Column(name="n", type="number")]), "tbl_1")
    await apply(RowsInserted(rows=[NewRow(id=f"row_{i:05d}", values={"n": i}) for i in range(10)]), "tbl_1")
    small = [
        await cost(RowUpdated(row_id="row_00001", values={"n": 0})),
        await cost(RowDeleted(row_id="row_00002")),
    ]
    await apply(
        RowsInserted(rows=[NewRow(id=f"row_{i:05d}", values={"n": i}) for i in range(10, 5000)]), "tbl_1"
    )
    big = [
        await cost(RowUpdated(row_id="row_00003", values={"n": 0})),
        await cost(RowDeleted(row_id="row_00004")),
    ]
    assert all(b < 2 * s for b, s in zip(big, small, strict=True)), (small, big)
