"""Opening the read model's SQLite file, and reading the stream position it has applied."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiosqlite

from crewyard.datadir import private_file

from .schema import DDL, SCHEMA_VERSION

#: How long a write waits for another writer before SQLite says the file is locked.
BUSY_TIMEOUT_MS = 30_000


async def open_db(path: Path) -> aiosqlite.Connection:
    # Every run's input and output is in here: 0600 before SQLite makes it (and its WAL) 0644.
    await asyncio.to_thread(private_file, path)
    db = await aiosqlite.connect(path, isolation_level=None)
    try:
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_MS)}")
        await _migrate(db)
        await db.executescript(DDL)
    except BaseException:
        await db.close()
        raise
    return db


async def _migrate(db: aiosqlite.Connection) -> None:
    """A file made for another schema is emptied (in one transaction, so that of two processes
    opening it at once only the first does it); the projector then replays the stream from the
    start. Everything here is derived from the stream, so nothing is lost."""
    await db.execute("BEGIN IMMEDIATE")
    try:
        async with db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        if row is not None and row[0] != SCHEMA_VERSION:
            async with db.execute("SELECT name FROM sqlite_master WHERE type = 'table'") as cur:
                tables = [r[0] for r in await cur.fetchall() if not str(r[0]).startswith("sqlite_")]
            for table in tables:
                await db.execute(f'DROP TABLE IF EXISTS "{table}"')
            await db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        await db.execute("COMMIT")
    except BaseException:
        await db.execute("ROLLBACK")
        raise


async def position(db: aiosqlite.Connection) -> int:
    """The last stream sequence the projector applied (0: nothing yet)."""
    rows = list(await db.execute_fetchall("SELECT seq AS seq FROM projector_position WHERE id = 1"))
    if not rows:
        return 0
    row = rows[0]
    return int(row["seq"] if isinstance(row, dict) else row[0])
