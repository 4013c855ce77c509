"""Opening the read model's SQLite file, and reading the stream position it has applied."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiosqlite

from crewyard.datadir import private_file

from .schema import DDL


async def open_db(path: Path) -> aiosqlite.Connection:
    # Every run's input and output is in here: 0600 before SQLite makes it (and its WAL) 0644.
    await asyncio.to_thread(private_file, path)
    db = await aiosqlite.connect(path, isolation_level=None)
    await db.execute("PRAGMA journal_mode=WAL")
    await db.execute("PRAGMA synchronous=NORMAL")
    await db.execute("PRAGMA busy_timeout=30000")
    await db.executescript(DDL)
    return db


async def position(db: aiosqlite.Connection) -> int:
    """The last stream sequence the projector applied (0: nothing yet)."""
    async with db.execute("SELECT seq AS seq FROM projector_position WHERE id = 1") as cur:
        row = await cur.fetchone()
    if row is None:
        return 0
    return int(row["seq"] if isinstance(row, dict) else row[0])
