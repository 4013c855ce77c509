"""Queries over the webhook, trigger and schedule tables (mixed into :class:`ReadModel`), and how
many of each (and of tables) a project has."""

from __future__ import annotations

from typing import Any

import msgspec

_json = msgspec.json.Decoder()

#: What a project has of each kind that counts against its limit (``Settings.max_webhooks``…).
_LIVE = {
    "webhook": "SELECT COUNT(*) AS n FROM webhooks WHERE project = ? AND deleted = 0",
    "trigger": "SELECT COUNT(*) AS n FROM triggers WHERE project = ? AND revoked = 0",
    "schedule": "SELECT COUNT(*) AS n FROM schedules WHERE project = ? AND deleted = 0",
    "table": "SELECT COUNT(*) AS n FROM tables WHERE project = ? AND deleted = 0",
}


class OutboundReads:
    async def _one(self, sql: str, args: tuple[Any, ...]) -> dict[str, Any] | None:
        raise NotImplementedError  # provided by ReadModel

    async def _all(self, sql: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
        raise NotImplementedError  # provided by ReadModel

    async def live_count(self, kind: str, project: str) -> int:
        """How many webhooks, triggers, schedules or tables (``kind``) ``project`` has."""
        row = await self._one(_LIVE[kind], (project,))
        return int(row["n"]) if row else 0

    async def webhook(self, webhook_id: str) -> dict[str, Any] | None:
        row = await self._one("SELECT * FROM webhooks WHERE id = ? AND deleted = 0", (webhook_id,))
        if row is not None:
            row["events"] = _json.decode(row["events"])
        return row

    async def webhooks(self, project: str) -> list[dict[str, Any]]:
        rows = await self._all(
            "SELECT * FROM webhooks WHERE project = ? AND deleted = 0 ORDER BY id", (project,)
        )
        for row in rows:
            row["events"] = _json.decode(row["events"])
        return rows

    async def deliveries(
        self, webhook_id: str, *, status: str | None, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first, each with its attempts (oldest first)."""
        where, args = ["webhook_id = ?"], [webhook_id]
        if status:
            where.append("status = ?")
            args.append(status)
        if cursor:
            where.append("id < ?")
            args.append(cursor)
        rows = await self._all(
            f"SELECT * FROM webhook_deliveries WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
            (*args, limit + 1),
        )
        more = len(rows) > limit
        rows = rows[:limit]
        if rows:
            marks = ",".join("?" * len(rows))
            attempts = await self._all(
                "SELECT delivery_id, attempt, at, outcome, status_code, error, latency_ms, response_excerpt,"
                f" next_attempt_at FROM webhook_attempts WHERE delivery_id IN ({marks}) ORDER BY seq",
                tuple(r["id"] for r in rows),
            )
            by_delivery: dict[str, list[dict[str, Any]]] = {}
            for a in attempts:
                by_delivery.setdefault(a.pop("delivery_id"), []).append(a)
            for r in rows:
                r["attempt_log"] = by_delivery.get(r["id"], [])
        return rows, (rows[-1]["id"] if more else None)

    async def delivery(self, delivery_id: str) -> dict[str, Any] | None:
        return await self._one("SELECT * FROM webhook_deliveries WHERE id = ?", (delivery_id,))

    async def trigger_by_token_hash(self, token_sha256: str) -> dict[str, Any] | None:
        return await self._one(
            "SELECT * FROM triggers WHERE token_sha256 = ? AND revoked = 0", (token_sha256,)
        )

    async def trigger(self, trigger_id: str) -> dict[str, Any] | None:
        return await self._one("SELECT * FROM triggers WHERE id = ?", (trigger_id,))

    async def triggers(self, project: str) -> list[dict[str, Any]]:
        return await self._all("SELECT * FROM triggers WHERE project = ? ORDER BY id", (project,))

    async def schedule(self, schedule_id: str) -> dict[str, Any] | None:
        return await self._one("SELECT * FROM schedules WHERE id = ? AND deleted = 0", (schedule_id,))

    async def schedules(self, project: str) -> list[dict[str, Any]]:
        return await self._all(
            "SELECT * FROM schedules WHERE project = ? AND deleted = 0 ORDER BY id", (project,)
        )
