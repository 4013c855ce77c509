"""Comparing a platform's live read model with one rebuilt from its stream (``projector rebuild``)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from crewyard.eventstore import EventStore, StreamSettings, connect
from crewyard.readmodel import ReadModel


async def _dumps(nats_url: str, live_db: Path, scratch: Path) -> tuple[Any, Any]:
    from crewyard.projector import rebuild  # the projector's own replay

    creds = live_db.parent / "nats" / "auth" / "creds" / "projector.creds"  # the platform's data dir
    nc = await connect(nats_url, name="test-rebuild", creds=creds)
    try:
        store = EventStore(nc, StreamSettings())
        last = await store.last_seq()
        live = await ReadModel.open(live_db)
        try:
            if not await live.wait_for(last, timeout=60):
                raise AssertionError(f"the live read model did not reach sequence {last}")
            before = await live.dump()
        finally:
            await live.close()
        await rebuild(store, scratch)
        rebuilt = await ReadModel.open(scratch)
        try:
            after = await rebuilt.dump()
        finally:
            await rebuilt.close()
        return before, after
    finally:
        await nc.drain()


def assert_rebuild_equals_live(nats_url: str, data_dir: Path, scratch: Path) -> None:
    """The platform's read model (quiet: nothing being appended) equals a replay of its stream."""
    before, after = asyncio.run(_dumps(nats_url, data_dir / "readmodel.sqlite3", scratch))
    for table in before:
        assert after[table] == before[table], f"table {table} differs after a rebuild"
    assert after == before
