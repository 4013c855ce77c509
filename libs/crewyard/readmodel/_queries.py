"""Queries over the read model (used by the gateway), and waiting until it has caught up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from crewyard.backoff import Backoff
from crewyard.core.ids import version_id

from ._base import open_keyed
from ._db import open_db
from ._outbound_queries import OutboundReads
from ._tables import TableQueries
from ._threads import ThreadQueries
from ._versions import VersionQueries
from .schema import TABLES, json_flag

_json = msgspec.json.Decoder()


def run_view(row: dict[str, Any]) -> dict[str, Any]:
    """A run as the API shows it (field names of the reference product)."""
    return {
        "id": row["id"],
        "run_id": row["id"],
        "project": row["project"],
        "deployment_id": row["deployment_id"],
        "version_id": version_id(row["deployment_id"]),
        "version_number": row["version_number"],
        "environment": row["environment"],
        "thread_id": row["thread_id"],
        "status": row["status"],
        # Stored JSON goes out as it is (msgspec.Raw): no decoding just to encode it again.
        "input": msgspec.Raw(row["input"].encode()),
        "output": msgspec.Raw(row["output"].encode()) if row["output"] is not None else None,
        "error_message": row["error_message"],
        "error_reason": row["error_reason"],
        "created_at": row["created_at"],
        "started_at": row["started_at"],
        "completed_at": row["completed_at"],
        "duration_ms": row["duration_ms"],
        "attempt": row["attempt"],
        "backend": row["backend"],
        "isolated": None if row["isolated"] is None else bool(row["isolated"]),
        "cancel_requested": bool(row["cancel_requested"]),
        "timeout_s": row["timeout_s"],
    }


#: A page of runs with their inputs and outputs ends once this much of them was read (at least
#: one run; the next page follows it): 500 runs of megabytes each took gigabytes of the gateway.
FULL_PAGE_BYTES = 16 << 20

#: Runs by status and backend (read from the ``runs_counts`` index alone).
RUN_COUNTS = (
    "SELECT status, COALESCE(backend, '') AS backend, COUNT(*) AS n FROM runs GROUP BY status, backend"
)

#: run_view, as SQL.
RUN_JSON = (
    "json_object('id', id, 'run_id', id, 'project', project, 'deployment_id', deployment_id,"
    " 'version_id', 'ver_' || substr(deployment_id, 5), 'version_number', version_number,"
    " 'environment', environment, 'thread_id', thread_id, 'status', status, 'input', json(input),"
    " 'output', json(output),"
    " 'error_message', error_message,"
    " 'error_reason', error_reason, 'created_at', created_at, 'started_at', started_at,"
    " 'completed_at', completed_at, 'duration_ms', duration_ms, 'attempt', attempt, 'backend', backend,"
    f" 'isolated', {json_flag('isolated')}, 'cancel_requested', {json_flag('cancel_requested')},"
    " 'timeout_s', timeout_s)"
)


def deployment_view(row: dict[str, Any], environments: list[str]) -> dict[str, Any]:
    """A version as the API shows it; ``environments`` are those whose pointer is on it
    (``current``: production's)."""
    return {
        "deployment_id": row["id"],
        "id": row["id"],
        "version_id": version_id(row["id"]),
        "version_number": row["version_number"],
        "project": row["project"],
        "name": row["name"],
        "status": row["status"],
        "environment": row["environment"],
        "environments": environments,
        "current": "production" in environments,
        "source_digest": row["source_digest"],
        "source_size": row["source_size"],
        "config": _json.decode(row["config"]),
        "created_at": row["created_at"],
        "ready_at": row["ready_at"],
        "backend": row["backend"],
        "image": row["image"],
        "env_digest": row["env_digest"],
        "cached": None if row["cached"] is None else bool(row["cached"]),
        "build_duration_ms": row["build_duration_ms"],
        "error_message": row["error_message"],
    }


class ReadModel(VersionQueries, TableQueries, ThreadQueries, OutboundReads):
    @classmethod
    async def open(cls, path: Path) -> ReadModel:
        db = await open_db(path)
        return cls(db, open_keyed(path))

    async def close(self) -> None:
        if self.keyed is not None:
            self.keyed.close()
        await self.db.close()

    async def position(self) -> int:
        """The last stream sequence the projector applied (0: nothing yet)."""
        row = await self._key("SELECT seq FROM projector_position WHERE id = 1", ())
        return int(row["seq"]) if row else 0

    async def wait_for(self, seq: int, timeout: float = 5.0) -> bool:
        """Wait until the projector has applied ``seq`` (read-your-writes); False on timeout."""
        patience = Backoff(timeout, first=0.002, most=0.05)
        while await self.position() < seq:
            if patience.expired:
                return False
            await patience.pause()
        return True

    async def catch_up(self, last_seq: int, timeout: float = 2.0) -> bool:
        """After a miss: wait until everything stored so far is applied (the caller saw it elsewhere)."""
        return await self.wait_for(last_seq, timeout)

    async def run(self, run_id: str) -> dict[str, Any] | None:
        row = await self._key("SELECT * FROM runs WHERE id = ?", (run_id,))
        return run_view(row) if row else None

    async def run_json(self, run_id: str) -> dict[str, Any] | None:
        """A run's status and, as ``j``, its API view as JSON text written by SQLite (``RUN_JSON``)."""
        return await self._key(f"SELECT status, {RUN_JSON} AS j FROM runs WHERE id = ?", (run_id,))

    async def run_by_idempotency_key(self, project: str, key: str) -> dict[str, Any] | None:
        """The run a request with this ``Idempotency-Key`` made in ``project`` (keys are the
        project's own: another project's same key is another request)."""
        row = await self._key(
            "SELECT * FROM runs WHERE idempotency_key = ? AND project = ? ORDER BY id LIMIT 1", (key, project)
        )
        return row

    async def runs(
        self,
        *,
        project: str | None,
        status: str | None,
        limit: int,
        cursor: str | None,
        deployment_id: str | None = None,
        full: bool = False,
    ) -> tuple[bytes, str | None]:
        """A page of runs, newest first, as a JSON array (bytes) of each run's JSON (``full``: with
        input and output, else the stored summary); and the cursor of the next page. Keyset
        pagination: the cursor is the last id shown, and each page is a range of the
        ``(project, id)``, ``(status, id)`` or ``(deployment_id, id)`` index, however deep."""
        where, args = [], []
        for col, val in (("project", project), ("status", status), ("deployment_id", deployment_id)):
            if val:
                where.append(f"{col} = ?")
                args.append(val)
        if cursor:
            where.append("id < ?")
            args.append(cursor)
        filt = (" WHERE " + " AND ".join(where)) if where else ""
        # One index serves one filter; more may scan the table.
        may_scan = len(where) - bool(cursor) > 1
        if full:  # inputs and outputs (MBs each): a page ends after FULL_PAGE_BYTES of them
            sql = f"SELECT CAST({RUN_JSON} AS BLOB) AS j, id FROM runs{filt} ORDER BY id DESC LIMIT ?"
            shown, more = await self._page_within(sql, (*args, limit + 1), limit, FULL_PAGE_BYTES)
            page = b"[" + b",".join(row["j"] for row in shown) + b"]"
            return page, (shown[-1]["id"] if more else None)
        key = (project, status, limit, cursor, deployment_id)
        version = self.pages.version()
        kept = self.pages.get(key, version)
        if kept is not None:
            return kept
        # Summaries (under 2 KB each): SQLite joins the page itself; read as rows, the sqlite3
        # module's own cost per row was more than SQLite's read of it. The subquery's rows reach
        # group_concat in its ORDER BY order (its LIMIT keeps the ORDER BY;
        # tests/readmodel/test_page_reads.py walks pages to check it). In the same statement (one
        # read of the file, so they agree): the ids at the page's end, the last shown (the next
        # page's cursor) and, if there is a next page, the one after it.
        sql = (
            "SELECT CAST('[' || COALESCE(group_concat(j, ','), '') || ']' AS BLOB),"
            f" (SELECT max(id) || ' ' || count(*) FROM (SELECT id FROM runs{filt}"
            " ORDER BY id DESC LIMIT 2 OFFSET ?))"
            f" FROM (SELECT summary AS j FROM runs{filt} ORDER BY id DESC LIMIT ?)"
        )
        rows, on_loop = await self._range_tuples(sql, (*args, limit - 1, *args, limit), may_scan=may_scan)
        page, end = rows[0]
        last, _, count = (end or "").partition(" ")
        next_cursor = last if count == "2" else None
        if on_loop:
            self.pages.put(key, version, page, next_cursor)
        return page, next_cursor

    async def run_counts(self) -> dict[tuple[str, str], int]:
        """How many runs there are per (status, backend); backend "" before a run started."""
        rows = await self._all(RUN_COUNTS, ())
        return {(r["status"], r["backend"]): int(r["n"]) for r in rows}

    async def artifacts(self, run_id: str) -> list[dict[str, Any]]:
        return await self._all(
            "SELECT name, size, content_type, sha256, created_at FROM artifacts WHERE run_id = ?"
            " ORDER BY name",
            (run_id,),
        )

    async def artifact(self, run_id: str, name: str) -> dict[str, Any] | None:
        return await self._key(
            "SELECT name, size, content_type, sha256, created_at FROM artifacts"
            " WHERE run_id = ? AND name = ?",
            (run_id, name),
        )

    async def project(self, name: str) -> dict[str, Any] | None:
        return await self._key("SELECT * FROM projects WHERE name = ?", (name,))

    async def projects(self) -> list[dict[str, Any]]:
        return await self._all("SELECT * FROM projects ORDER BY name", ())

    async def deployment(self, dep_id: str) -> dict[str, Any] | None:
        row = await self._key("SELECT * FROM deployments WHERE id = ?", (dep_id,))
        if row is None:
            return None
        pointers = await self._range(
            "SELECT environment FROM environments WHERE deployment_id = ? ORDER BY environment", (dep_id,)
        )
        return deployment_view(row, [p["environment"] for p in pointers])

    async def deployment_by_idempotency_key(self, project: str, key: str) -> dict[str, Any] | None:
        row = await self._one(
            "SELECT id, request_hash FROM deployments WHERE idempotency_key = ? AND project = ?"
            " ORDER BY id LIMIT 1",
            (key, project),
        )
        return row

    async def deployments(self, project: str, name: str | None = None) -> list[dict[str, Any]]:
        """A project's versions (of one name), newest first."""
        where, args = "project = ?", [project]
        if name is not None:
            where, args = where + " AND name = ?", [project, name]
        rows = await self._all(f"SELECT * FROM deployments WHERE {where} ORDER BY id DESC", tuple(args))
        pointers: dict[str, list[str]] = {}
        for p in await self._all(
            "SELECT deployment_id, environment FROM environments WHERE project = ? ORDER BY environment",
            (project,),
        ):
            pointers.setdefault(p["deployment_id"], []).append(p["environment"])
        return [deployment_view(r, pointers.get(r["id"], [])) for r in rows]

    async def env(self, project: str) -> list[dict[str, Any]]:
        rows = await self._all(
            "SELECT key, environment, updated_at FROM env WHERE project = ? ORDER BY key, environment",
            (project,),
        )
        return [{**r, "environment": r["environment"] or None} for r in rows]

    async def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table, for comparing two read models."""
        out: dict[str, list[tuple[Any, ...]]] = {}
        for table in (*TABLES, "projector_position"):
            rows = await self._all(f"SELECT * FROM {table}", ())
            out[table] = sorted(tuple(r.values()) for r in rows)
        return out
