"""Threads and their checkpoint history in the read model (the projector writes them:
``crewyard.projector.threads``)."""

from __future__ import annotations

from typing import Any

import msgspec

from ._base import Reader

TABLES = ("threads", "thread_checkpoints")
DDL = """
CREATE TABLE IF NOT EXISTS threads (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    deployment_id TEXT,
    status TEXT NOT NULL,
    active_run_id TEXT,
    metadata TEXT NOT NULL,
    state TEXT,
    state_ref TEXT,
    checkpoint_id TEXT,
    copied_from TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    last_seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS threads_project ON threads (project, name, id);
-- A project's threads newest first without a name (the usual listing): walked in order, not
-- every row (with its state, inline up to 1 MiB) sorted to show a page.
CREATE INDEX IF NOT EXISTS threads_project_newest ON threads (project, id);

CREATE TABLE IF NOT EXISTS thread_checkpoints (
    thread_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    checkpoint_id TEXT NOT NULL,
    run_id TEXT,
    state TEXT,
    checkpoint TEXT,
    interrupts TEXT NOT NULL,
    state_ref TEXT,
    parent_checkpoint_id TEXT,
    framework TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (thread_id, seq)
);
"""
_dec = msgspec.json.Decoder()


def thread_view(row: dict[str, Any]) -> dict[str, Any]:
    """A thread as the API shows it; ``values`` is None when the state is in the object store
    (``state_ref``: the gateway reads it there)."""
    return {
        "thread_id": row["id"],
        "id": row["id"],
        "project": row["project"],
        "name": row["name"],
        "deployment_id": row["deployment_id"],
        "status": row["status"],
        "active_run_id": row["active_run_id"],
        "metadata": _dec.decode(row["metadata"]),
        "values": _dec.decode(row["state"]) if row["state"] is not None else None,
        "state_ref": row["state_ref"],
        "checkpoint_id": row["checkpoint_id"],
        "copied_from": row["copied_from"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def checkpoint_view(row: dict[str, Any], *, full: bool = False) -> dict[str, Any]:
    view = {
        "checkpoint_id": row["checkpoint_id"],
        "run_id": row["run_id"],
        "values": _dec.decode(row["state"]) if row["state"] is not None else None,
        "interrupts": _dec.decode(row["interrupts"]),
        "parent_checkpoint_id": row["parent_checkpoint_id"],
        "framework": row["framework"],
        "created_at": row["created_at"],
        "state_ref": row["state_ref"],
    }
    if full:
        view["checkpoint"] = _dec.decode(row["checkpoint"]) if row["checkpoint"] is not None else None
    return view


class ThreadQueries(Reader):
    async def thread(self, thread_id: str) -> dict[str, Any] | None:
        row = await self._one("SELECT * FROM threads WHERE id = ?", (thread_id,))
        return thread_view(row) if row else None

    async def threads(
        self,
        *,
        project: str | None,
        name: str | None,
        status: str | None,
        limit: int,
        offset: int,
    ) -> list[dict[str, Any]]:
        """Newest first."""
        where, args = [], []
        for col, val in (("project", project), ("name", name), ("status", status)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        sql = "SELECT * FROM threads" + (" WHERE " + " AND ".join(where) if where else "")
        rows = await self._all(sql + " ORDER BY id DESC LIMIT ? OFFSET ?", (*args, limit, offset))
        return [thread_view(r) for r in rows]

    async def history(
        self, thread_id: str, *, limit: int, offset: int, full: bool = False
    ) -> tuple[list[dict[str, Any]], int]:
        """The thread's checkpoints, newest first, and how many there are."""
        total = await self._one(
            "SELECT COUNT(*) AS n FROM thread_checkpoints WHERE thread_id = ?", (thread_id,)
        )
        rows = await self._all(
            "SELECT * FROM thread_checkpoints WHERE thread_id = ? ORDER BY seq DESC LIMIT ? OFFSET ?",
            (thread_id, limit, offset),
        )
        return [checkpoint_view(r, full=full) for r in rows], int(total["n"]) if total else 0

    async def thread_runs(self, thread_id: str) -> list[str]:
        rows = await self._all("SELECT id FROM runs WHERE thread_id = ? ORDER BY id", (thread_id,))
        return [r["id"] for r in rows]
