"""The connection every query family reads through: rows come back as dicts."""

from __future__ import annotations

from typing import Any

import aiosqlite


def _row(cur: aiosqlite.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return {col[0]: row[i] for i, col in enumerate(cur.description)}


class Reader:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db
        self.db.row_factory = _row  # type: ignore[assignment]

    async def _one(self, sql: str, args: tuple[Any, ...]) -> dict[str, Any] | None:
        async with self.db.execute(sql, args) as cur:
            row = await cur.fetchone()
        return row  # type: ignore[return-value]

    async def _all(self, sql: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
        async with self.db.execute(sql, args) as cur:
            rows = await cur.fetchall()
        return list(rows)  # type: ignore[arg-type]
