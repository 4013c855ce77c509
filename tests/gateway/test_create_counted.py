"""``Gateway.create_counted`` when the read model is stalled (a projector recovering): every
creation fails at once with a 503, none waits in a queue for the ones before it."""

from __future__ import annotations

import asyncio

from crewyard.gateway.context import Gateway
from crewyard.gateway.errors import ApiError
from crewyard.keyedlock import KeyedLock


class _Created:
    AGGREGATE, TYPE = "schedule", "schedule.created"


class _Store:
    prefix = "crewyard.evt"

    async def last_seq_of(self, filter_subject: str) -> int:
        return 100

    def aggregate_filter(self, *parts: str) -> str:
        return ".".join(parts)


class _StalledReadModel:
    """Never reaches the stream's head; notes how many requests wait for it at once."""

    def __init__(self) -> None:
        self.waiting = self.most = 0

    async def wait_for(self, seq: int, timeout: float = 5.0) -> bool:
        self.waiting += 1
        self.most = max(self.most, self.waiting)
        await asyncio.sleep(0.05)
        self.waiting -= 1
        return False

    async def live_count(self, kind: str, project: str) -> int:
        raise AssertionError("counted without a read model that holds the last creation")


async def test_creations_fail_together_when_the_read_model_is_behind() -> None:
    g = object.__new__(Gateway)
    rm = _StalledReadModel()
    g.store, g.rm, g.creating = _Store(), rm, KeyedLock()  # type: ignore[assignment]
    results = await asyncio.gather(
        *(g.create_counted(_Created(), "shop", f"sch_{i}", 10) for i in range(3)),  # type: ignore[arg-type]
        return_exceptions=True,
    )
    assert all(isinstance(r, ApiError) and r.status == 503 and "behind" in str(r) for r in results), results
    assert rm.most == 3  # side by side, not one after another behind the gateway's turn-taking
    assert len(g.creating) == 0
