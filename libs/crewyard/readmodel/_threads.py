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
#: A page of threads ends once their stored JSON (metadata and inline states, up to 1 MiB each)
#: passes this (at least one thread; the page says where the next starts).
PAGE_BYTES = 16 << 20
#: The columns of a listing without stored JSON (the console's list shows none of it).
LEAN = (
    "id, project, name, deployment_id, status, active_run_id, '{}' AS metadata, NULL AS state,"
    " NULL AS state_ref, checkpoint_id, copied_from, created_at, updated_at"
)


def _raw(text: str | None) -> msgspec.Raw | None:
    """Stored JSON as it goes out: never decoded only to be encoded again (a JSON of many small
    objects takes some 24 times its size as Python objects)."""
    return msgspec.Raw(text.encode()) if text is not None else None


def thread_view(row: dict[str, Any]) -> dict[str, Any]:
    """A thread as the API shows it, its stored JSON raw; ``values`` is None when the state is
    in the object store (``state_ref``: the gateway reads it there)."""
    return {
        "thread_id": row["id"],
        "id": row["id"],
        "project": row["project"],
        "name": row["name"],
        "deployment_id": row["deployment_id"],
        "status": row["status"],
        "active_run_id": row["active_run_id"],
        "metadata": _raw(row["metadata"]),
        "values": _raw(row["state"]),
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
        "values": _raw(row["state"]),
        "interrupts": _raw(row["interrupts"]),
        "parent_checkpoint_id": row["parent_checkpoint_id"],
        "framework": row["framework"],
        "created_at": row["created_at"],
        "state_ref": row["state_ref"],
    }
    if full:
        view["checkpoint"] = _raw(row["checkpoint"])
    return view


def _stored_size(row: dict[str, Any]) -> int:
    """The bytes of a row's stored JSON (UTF-8: a character may be four)."""
    return sum(
        _utf8_size(row[col] or "") for col in ("metadata", "state", "interrupts", "checkpoint") if col in row
    )


def _utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


class ThreadQueries(Reader):
    async def thread(self, thread_id: str) -> dict[str, Any] | None:
        row = await self._one("SELECT * FROM threads WHERE id = ?", (thread_id,))
        return thread_view(row) if row else None

    async def thread_owner(self, thread_id: str) -> dict[str, Any] | None:
        """A thread's id and project, read by its key without its state (whose project a
        request's thread is, before anything of it is read)."""
        return await self._key("SELECT id, project FROM threads WHERE id = ?", (thread_id,))

    async def threads(
        self,
        *,
        project: str | None,
        name: str | None,
        status: str | None,
        limit: int,
        offset: int,
        lean: bool = False,
    ) -> tuple[list[dict[str, Any]], bool]:
        """A page of threads, newest first, and whether more follow. The page ends early once
        ``PAGE_BYTES`` of stored JSON were read (at least one thread); ``lean``: without any
        (metadata ``{}``, no values)."""
        where, args = [], []
        for col, val in (("project", project), ("name", name), ("status", status)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        sql = f"SELECT {LEAN if lean else '*'} FROM threads" + (
            " WHERE " + " AND ".join(where) if where else ""
        )
        rows, more = await self._page_within(
            sql + " ORDER BY id DESC LIMIT ? OFFSET ?",
            (*args, limit + 1, offset),
            limit,
            PAGE_BYTES,
            measure=_stored_size,
        )
        return [thread_view(r) for r in rows], more

    async def history(
        self, thread_id: str, *, limit: int, offset: int, full: bool = False
    ) -> tuple[list[dict[str, Any]], int, bool]:
        """The thread's checkpoints, newest first, how many there are, and whether the page ended
        early (``PAGE_BYTES`` of inline states read: at least one checkpoint)."""
        total = await self._one(
            "SELECT COUNT(*) AS n FROM thread_checkpoints WHERE thread_id = ?", (thread_id,)
        )
        columns = "*" if full else "thread_id, seq, checkpoint_id, run_id, state, interrupts, state_ref,"
        if not full:
            columns += " parent_checkpoint_id, framework, created_at"
        rows, more = await self._page_within(
            f"SELECT {columns} FROM thread_checkpoints WHERE thread_id = ? ORDER BY seq DESC"
            " LIMIT ? OFFSET ?",
            (thread_id, limit + 1, offset),
            limit,
            PAGE_BYTES,
            measure=_stored_size,
        )
        cut = more and len(rows) < limit
        return [checkpoint_view(r, full=full) for r in rows], int(total["n"]) if total else 0, cut

    async def thread_runs(self, thread_id: str) -> list[str]:
        rows = await self._all("SELECT id FROM runs WHERE thread_id = ? ORDER BY id", (thread_id,))
        return [r["id"] for r in rows]
