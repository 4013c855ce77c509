"""An event changes rows of its own project only: an event of one project that names an id of
another project's thread, run, deployment, table, webhook, delivery, trigger or schedule leaves
the whole read model as it was (ids are random, but whoever may write one project's events can
write any id into them). The project's own events still change its rows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from crewyard.core.events import (
    Payload,
    ThreadCheckpointed,
    ThreadCreated,
    ThreadDeleted,
    ThreadRunAccepted,
    ThreadRunEnded,
    make_event,
)
from crewyard.projector.handlers import HANDLERS
from crewyard.readmodel import ReadModel

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Projects:
    """Events of any project, applied in one sequence straight to the projector's handlers."""

    def __init__(self, rm: ReadModel) -> None:
        self.rm, self.seq = rm, 0

    async def __call__(self, project: str, payload: Payload, aggregate_id: str) -> None:
        self.seq += 1
        event = make_event(
            payload, project=project, aggregate_id=aggregate_id, event_id=f"evt_{self.seq:04d}", time=T0
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
    """Apply each of another project's events; the read model stays as it was after each."""
    before = await _snapshot(rm)
    for payload, aggregate_id in events:
        await apply("rival", payload, aggregate_id)
        assert await _snapshot(rm) == before, f"rival's {payload.TYPE} changed acme's rows"


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
