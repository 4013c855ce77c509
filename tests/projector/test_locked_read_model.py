"""The live projector waits while another process holds the read model (a rebuild replays the
whole stream in one transaction): it failed past SQLite's busy timeout, and ``crewyard up`` with
it, every service of the platform."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from crewyard.core.events import ProjectCreated, make_event
from crewyard.core.ids import new_id
from crewyard.eventstore import EventStore
from crewyard.projector import Projector
from crewyard.readmodel import _db as readmodel_db
from crewyard.readmodel import open_db


async def _project(store: EventStore, name: str) -> None:
    event = make_event(ProjectCreated(name=name), project=name, aggregate_id=name, event_id=new_id("evt"))
    await store.append(event)


def _projected(path: Path, name: str) -> bool:
    if not path.exists():
        return False
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT 1 FROM projects WHERE name = ?", (name,)).fetchone() is not None
    except sqlite3.OperationalError:
        return False  # not made yet
    finally:
        db.close()


async def _until_projected(path: Path, name: str) -> None:
    for _ in range(300):
        if _projected(path, name):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"project {name} was never projected")


@pytest.fixture
def impatient(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readmodel_db, "BUSY_TIMEOUT_MS", 100)  # SQLite gives up at once, not in 30 s


async def _held_meanwhile(
    store: EventStore, path: Path, task: asyncio.Task[None], holder: sqlite3.Connection
) -> None:
    """An event comes while ``holder`` holds the file: the projector waits (many busy timeouts)
    instead of failing, and projects it once the file is let go."""
    await _project(store, "during")
    await asyncio.sleep(1.5)
    assert not task.done(), task.exception()
    holder.execute("ROLLBACK")
    holder.close()
    await _until_projected(path, "during")


def _rebuilding(path: Path) -> sqlite3.Connection:
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # what a rebuild holds for its whole replay
    return holder


@pytest.mark.usefixtures("impatient")
async def test_the_projector_waits_for_a_writer_holding_the_read_model(
    store: EventStore, tmp_path: Path
) -> None:
    path, stop = tmp_path / "readmodel.sqlite3", asyncio.Event()
    task = asyncio.create_task(Projector(store, path).run(stop))
    try:
        await _project(store, "before")
        await _until_projected(path, "before")
        await _held_meanwhile(store, path, task, _rebuilding(path))
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@pytest.mark.usefixtures("impatient")
async def test_a_projector_started_while_the_read_model_is_held_waits_too(
    store: EventStore, tmp_path: Path
) -> None:
    """Opening the file checks its schema in a write transaction: a projector started (or
    restarted) during a rebuild failed there, before it followed anything."""
    path, stop = tmp_path / "readmodel.sqlite3", asyncio.Event()
    await (await open_db(path)).close()
    holder = _rebuilding(path)
    task = asyncio.create_task(Projector(store, path).run(stop))
    try:
        await _held_meanwhile(store, path, task, holder)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
