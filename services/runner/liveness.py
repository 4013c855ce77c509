"""Which runners are alive and what they are executing, in a JetStream key-value bucket.

A redelivered run message does not prove its runner is dead: the broker may have restarted, or
heartbeats may have been delayed. Before declaring a run orphaned, a runner looks up the owner's
entry: each runner writes ``{"at": time, "runs": [...]}`` every few seconds, and the bucket's
TTL removes the entry of a runner that stopped writing. Only a run whose owner is gone, or whose
owner no longer lists it, is orphaned.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable

from nats.js.api import KeyValueConfig
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from crewyard.eventstore import EventStore

log = logging.getLogger("crewyard.runner")


class Liveness:
    def __init__(
        self, store: EventStore, runner_id: str, every_s: float, bucket: str = "CREWYARD_RUNNERS"
    ) -> None:
        self.store = store
        self.runner_id = runner_id
        self.every_s = every_s
        self.bucket = bucket
        self.stale_after_s = max(every_s * 4, 5.0)
        self._kv: KeyValue | None = None

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            try:
                self._kv = await self.store.js.key_value(self.bucket)
            except (BucketNotFoundError, NotFoundError):
                self._kv = await self.store.js.create_key_value(
                    KeyValueConfig(
                        bucket=self.bucket,
                        history=1,
                        ttl=self.stale_after_s * 3,
                        replicas=self.store.settings.replicas,
                    )
                )
        return self._kv

    @staticmethod
    def _key(runner_id: str) -> str:
        return "".join(c if c.isalnum() or c in "-_=" else "_" for c in runner_id)

    async def beat(self, active: Callable[[], list[str]]) -> None:
        """Write this runner's entry now and then, until cancelled."""
        while True:
            with contextlib.suppress(Exception):
                kv = await self._bucket()
                value = json.dumps({"at": time.time(), "runs": active()}).encode()
                await kv.put(self._key(self.runner_id), value)
            await asyncio.sleep(self.every_s)

    async def owns(self, runner_id: str | None, run_id: str) -> bool:
        """True when ``runner_id`` is alive and still executing ``run_id``."""
        if not runner_id:
            return False
        kv = await self._bucket()
        try:
            entry = await kv.get(self._key(runner_id))
        except KeyNotFoundError:
            return False
        value = json.loads(entry.value or b"{}")
        fresh = time.time() - float(value.get("at", 0)) < self.stale_after_s
        return fresh and run_id in value.get("runs", [])
