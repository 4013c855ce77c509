"""The connections every query family reads through: rows come back as dicts.

Two connections to the same file. Reads that touch a handful of rows by key (a run, a project, a
page of an index) are made on the event loop's own thread with plain ``sqlite3``: they take tens
of microseconds, less than handing them to another thread and waking the loop when they are done
(and that thread must take the interpreter's lock back from a busy loop: under load, the wait
was most of a request's time). Reads that may scan (counts, filters, exports) go through
``aiosqlite``'s thread, so that they never hold the loop. The loop's connection never waits for a
lock (``busy_timeout`` 0; WAL readers do not wait for the writer): in the rare case SQLite says
busy, the read is made on the thread instead, which waits as long as the writer needs.
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import aiosqlite


def _row(cur: sqlite3.Cursor | aiosqlite.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return {col[0]: row[i] for i, col in enumerate(cur.description)}


def open_keyed(path: Path) -> sqlite3.Connection:
    """The loop's connection for keyed reads (made after :func:`open_db` created the file)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA query_only=1")
    conn.execute("PRAGMA busy_timeout=0")
    conn.row_factory = _row
    return conn


class Pages:
    """Answers kept while the file is unchanged: a listing asked again (a console or a script
    polling the same page) is the bytes it was, until another connection commits anything
    (``PRAGMA data_version`` of the loop's connection, which never writes, tells; a few
    microseconds against the tens a page's read takes). The version is read before the page,
    and only a page the same connection read (a snapshot taken after the version was read) is
    kept: a commit in between makes the kept page newer than its version, never older. At most
    ``most`` pages, each at most ``largest`` bytes, the least recently asked left out first."""

    def __init__(self, keyed: sqlite3.Connection | None, most: int = 32, largest: int = 256 << 10) -> None:
        self.keyed, self.most, self.largest = keyed, most, largest
        self._kept: OrderedDict[Hashable, tuple[int, bytes, Any]] = OrderedDict()

    def version(self) -> int | None:
        """The file's version as the loop's connection sees it (None: no such connection)."""
        if self.keyed is None:
            return None
        cur = self.keyed.cursor()
        cur.row_factory = None
        try:
            return int(cur.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.OperationalError:
            return None
        finally:
            cur.close()

    def get(self, key: Hashable, version: int | None) -> tuple[bytes, Any] | None:
        kept = self._kept.get(key)
        if version is None or kept is None or kept[0] != version:
            return None
        self._kept.move_to_end(key)
        return kept[1], kept[2]

    def put(self, key: Hashable, version: int | None, page: bytes, extra: Any) -> None:
        if version is None or len(page) > self.largest:
            return
        self._kept[key] = (version, page, extra)
        self._kept.move_to_end(key)
        while len(self._kept) > self.most:
            self._kept.popitem(last=False)


class Reader:
    def __init__(self, db: aiosqlite.Connection, keyed: sqlite3.Connection | None = None) -> None:
        self.db = db
        self.db.row_factory = _row  # type: ignore[assignment]
        self.keyed = keyed
        self.pages = Pages(keyed)

    # One trip to the connection's thread per query (execute, fetch and close there at once):
    # a cursor's execute, fetch and close are three, and each is a wake-up of the event loop.
    async def _one(self, sql: str, args: tuple[Any, ...]) -> dict[str, Any] | None:
        rows = await self.db.execute_fetchall(sql, args)
        return next(iter(rows), None)  # type: ignore[return-value]

    async def _all(self, sql: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
        return list(await self.db.execute_fetchall(sql, args))  # type: ignore[arg-type]

    # Keyed reads: a primary key, a unique key, or a bounded range of an index (LIMIT), never a scan.
    async def _key(self, sql: str, args: tuple[Any, ...]) -> dict[str, Any] | None:
        rows = await self._range(sql, args)
        return rows[0] if rows else None

    async def _range(self, sql: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
        rows = self._on_loop(sql, args, _row)
        return rows if rows is not None else await self._all(sql, args)

    async def _range_tuples(
        self, sql: str, args: tuple[Any, ...], *, may_scan: bool = False
    ) -> tuple[list[tuple[Any, ...]], bool]:
        """A keyed range as tuples: a page of many rows without a dict made for each; and whether
        the loop's connection read it (a snapshot taken then). With ``may_scan`` (a filter no
        index serves) it is read on the thread instead, whose connection may be in an older
        snapshot while another of its statements is open (``_page_within``'s)."""
        rows = None if may_scan else self._on_loop(sql, args, None)
        if rows is not None:
            return rows, True
        return [tuple(r.values()) for r in await self._all(sql, args)], False

    async def _page_within(
        self,
        sql: str,
        args: tuple[Any, ...],
        limit: int,
        budget: int,
        measure: Callable[[dict[str, Any]], int] | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        """Up to ``limit`` rows of ``sql`` (which asks for one more), read on the thread a few at
        a time, and no more once their sizes (``measure``; default: their first columns' bytes)
        would pass ``budget`` (at least one row); and whether more rows follow."""
        shown: list[dict[str, Any]] = []
        size = 0
        async with self.db.execute(sql, args) as cur:
            while rows := await cur.fetchmany(8):
                for row in rows:
                    values: dict[str, Any] = row  # type: ignore[assignment]  # (the dict row factory)
                    first = measure(values) if measure else len(next(iter(values.values())))
                    if len(shown) == limit or (shown and size + first > budget):
                        return shown, True
                    shown.append(values)
                    size += first
        return shown, False

    def _on_loop(self, sql: str, args: tuple[Any, ...], factory: Any) -> list[Any] | None:
        """The rows read on the loop's own connection, or None: none, or SQLite said busy."""
        if self.keyed is None:
            return None
        cur = self.keyed.cursor()
        cur.row_factory = factory
        try:
            return cur.execute(sql, args).fetchall()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            return None
        finally:
            cur.close()
