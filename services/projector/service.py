"""The projector: applies every event to the SQLite read model, in order, exactly once.

Its position (the last applied stream sequence) is written in the same transaction as the rows,
so a crash at any point neither loses nor repeats an update. The position in the database is the
truth: before each batch the projector checks it, and if a rebuild moved it, follows again from
there. ``rebuild`` clears the tables and replays the stream from sequence 1 in one transaction.

An event that is not valid (see ``crewyard.core.events.decode``) is set aside — logged, counted —
and the position moves past it: live and rebuild both go through :func:`apply`, so both skip the
same events and produce the same read model.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from pathlib import Path

import aiosqlite

from crewyard.core import subjects
from crewyard.core.events import InvalidEvent
from crewyard.eventstore import EventStore, RawEvent, StoreUnavailable, set_aside
from crewyard.readmodel import TABLES, open_db, position
from crewyard.servicekit import unless_stopped

from .handlers import HANDLERS

log = logging.getLogger("crewyard.projector")
BATCH = 2000


def wanted(subject: str, prefix: str) -> bool:
    """Whether any read model needs events on this subject (decided without decoding)."""
    return subjects.event_type_of(subject, prefix) in HANDLERS


async def apply(db: aiosqlite.Connection, raw: RawEvent, prefix: str) -> None:
    handler = HANDLERS.get(subjects.event_type_of(raw.subject, prefix) or "")
    if handler is None:
        return  # logs, tool events …: not part of any read model
    try:
        rec = raw.decode(prefix)
    except InvalidEvent as exc:
        set_aside("projector", raw.seq, raw.subject, exc)
        return
    try:
        await handler(db, rec.seq, rec.event)
    except (sqlite3.IntegrityError, sqlite3.DataError, OverflowError) as exc:
        # A valid event the tables cannot take: a failed statement leaves the transaction as it
        # was, and a poison row must not stop every later one.
        set_aside("projector", raw.seq, raw.subject, exc)


def _locked(exc: sqlite3.OperationalError) -> bool:
    return getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or (
        "locked" in str(exc) or "busy" in str(exc)
    )


class Projector:
    def __init__(self, store: EventStore, db_path: Path) -> None:
        self.store = store
        self.db_path = db_path

    async def run(self, stop: asyncio.Event) -> None:
        db: aiosqlite.Connection | None = None
        try:
            while not stop.is_set():
                try:
                    if db is None:
                        db = await open_db(self.db_path)  # (its schema check writes: it may wait too)
                    await self._follow(db, stop)
                except StoreUnavailable:
                    log.warning("event store unavailable; retrying")
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 1.0)
                except sqlite3.OperationalError as exc:
                    if not _locked(exc):
                        raise
                    # Another writer holds the read model past the busy timeout: a rebuild
                    # replays the whole stream in one transaction. Follow again once it is done.
                    log.warning("the read model is being written by another process (a rebuild?); waiting")
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 1.0)
        finally:
            if db is not None:
                await db.close()

    async def _follow(self, db: aiosqlite.Connection, stop: asyncio.Event) -> None:
        pos = await position(db)
        batches = self.store.read_batches(
            subjects.all_events(self.store.prefix), start_seq=pos + 1, batch=BATCH
        )
        try:
            while not stop.is_set():
                # A read is given up at a stop (a broker that went away fails it only after its
                # request timeout); what was read is applied whole, in one transaction.
                try:
                    batch = await unless_stopped(anext(batches), stop)
                except StopAsyncIteration:
                    return
                if not batch:
                    continue
                moved = await self._apply_batch(db, pos, batch)
                if moved is None:
                    return  # position changed under us (rebuild): follow again from the stored one
                pos = moved
        finally:
            await batches.aclose()

    async def _apply_batch(self, db: aiosqlite.Connection, pos: int, batch: list[RawEvent]) -> int | None:
        await db.execute("BEGIN IMMEDIATE")
        try:
            if await position(db) != pos:
                await db.execute("ROLLBACK")
                return None
            for raw in batch:
                if raw.seq <= pos:
                    continue  # an ordered consumer never repeats, but a resubscribe may overlap
                await apply(db, raw, self.store.prefix)
                pos = raw.seq
            await db.execute("UPDATE projector_position SET seq = ? WHERE id = 1", (pos,))
            await db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                await db.execute("ROLLBACK")
            raise
        return pos


async def rebuild(store: EventStore, db_path: Path) -> int:
    """Drop the read model and replay the whole stream; returns the number of events read."""
    db = await open_db(db_path)
    try:
        last = await store.last_seq()
        await db.execute("BEGIN IMMEDIATE")
        try:
            for table in TABLES:
                await db.execute(f"DELETE FROM {table}")

            def handled(subject: str) -> bool:
                return wanted(subject, store.prefix)

            if last > 0:
                everything = subjects.all_events(store.prefix)
                async for batch in store.scan(everything, start_seq=1, until_seq=last, want=handled):
                    for raw in batch:
                        await apply(db, raw, store.prefix)
            pos = count = last
            await db.execute("UPDATE projector_position SET seq = ? WHERE id = 1", (pos,))
            await db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                await db.execute("ROLLBACK")
            raise
        return count
    finally:
        await db.close()
