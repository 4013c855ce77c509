"""The projector sets unreadable events aside, moves past them, and a rebuild agrees with it."""

import asyncio
import sqlite3
import time
from pathlib import Path

from crewyard.core.events import (
    DeploymentCreated,
    DeploymentReady,
    ProjectCreated,
    RunCompleted,
    RunQueued,
    RunStarted,
    make_event,
)
from crewyard.core.ids import new_id
from crewyard.eventstore import EventStore, set_aside_counts
from crewyard.projector import Projector, rebuild
from crewyard.readmodel import TABLES
from crewyard.testing.poison import poison


def _dump(path: Path) -> dict[str, list[tuple]]:
    db = sqlite3.connect(path)
    try:
        out = {t: sorted(db.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in TABLES}
        out["position"] = db.execute("SELECT seq FROM projector_position").fetchall()
        return out
    finally:
        db.close()


async def _position(path: Path) -> int:
    def read() -> int:
        db = sqlite3.connect(path)
        try:
            row = db.execute("SELECT seq FROM projector_position WHERE id = 1").fetchone()
            return int(row[0]) if row else 0
        except sqlite3.OperationalError:
            return 0  # not created yet
        finally:
            db.close()

    return await asyncio.to_thread(read)


async def test_poison_is_set_aside_live_and_rebuild_gives_the_same_read_model(store: EventStore, tmp_path):
    project, dep, run, other = "acme", new_id("dep"), new_id("run"), new_id("run")

    async def append(payload, aggregate_id):
        event = make_event(payload, project=project, aggregate_id=aggregate_id, event_id=new_id("evt"))
        return await store.append(event)

    await append(ProjectCreated(name=project), project)
    await append(
        DeploymentCreated(
            source_digest="sha256-" + "0" * 64, source_size=1, config={"entrypoint": "crew:run"}
        ),
        dep,
    )
    await append(DeploymentReady(env_digest="e", backend="venv"), dep)
    await append(RunQueued(deployment_id=dep, input={"x": 1}), run)
    for subject, data in poison(store.prefix, project, run, other):
        await store.js.publish(subject, data, stream=store.stream)
    await append(RunStarted(runner_id="r", backend="process", isolated=False), run)
    await append(RunCompleted(output={"ok": True}), run)
    last = await store.last_seq()
    before = set_aside_counts().get("projector", 0)

    live_db = tmp_path / "live.sqlite3"
    stop = asyncio.Event()
    task = asyncio.create_task(Projector(store, live_db).run(stop))
    try:
        deadline = time.monotonic() + 60
        while await _position(live_db) < last:
            assert time.monotonic() < deadline, "the projector did not move past the poison"
            assert not task.done(), task
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert set_aside_counts()["projector"] > before

    rebuilt_db = tmp_path / "rebuilt.sqlite3"
    assert await rebuild(store, rebuilt_db) == last
    live, rebuilt = _dump(live_db), _dump(rebuilt_db)
    assert live == rebuilt
    (row,) = [r for r in live["runs"] if r[0] == run]
    assert "succeeded" in row and '{"ok":true}' in row
    assert [r[0] for r in live["runs"]] == [run]  # nothing was made up from the poison
