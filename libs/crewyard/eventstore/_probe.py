"""The questions a readiness probe asks JetStream, each answered within the store's read timeout.

- ``stream_head``: the stream's info (its last sequence), then that last event read from the
  stream's leader. Stream info alone is not enough: while a cluster has lost its quorum a node
  still answers it, with every replica marked current, but the leader read is refused at once.
- ``heartbeat``: one small write to a key-value bucket of its own (``health_bucket``), which the
  bucket's leader acknowledges only once a quorum of servers stored it. The event stream itself
  is never written to for this: its history is the platform's truth, and every consumer (and
  every external subscriber) would have to skip heartbeats forever.
"""

from __future__ import annotations

import asyncio
import time

import msgspec
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from ._errors import StoreUnavailable
from ._store import EventStore

#: Heartbeats of instances that are gone expire on their own.
HEARTBEAT_TTL_S = 3600.0


class Probe:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        self._js = store.nc.jetstream(timeout=store.read_timeout)
        self._kv: KeyValue | None = None
        self._lock = asyncio.Lock()

    async def stream_head(self) -> int:
        """The stream's last sequence, confirmed by its leader."""
        try:
            info = await self._js.stream_info(self.store.stream)
        except NotFoundError as exc:
            raise StoreUnavailable(f"stream {self.store.stream} does not exist") from exc
        except Exception as exc:
            raise StoreUnavailable(f"no answer about stream {self.store.stream}: {exc!r}") from exc
        head = int(info.state.last_seq)
        if head > 0:
            await self.store.get(head, leader=True)
        return head

    async def heartbeat(self, key: str) -> None:
        """Write ``key`` = now; returns once JetStream acknowledged it."""
        kv = await self._bucket()
        try:
            await kv.put(key, msgspec.json.encode({"time": time.time()}))
        except Exception as exc:
            self._kv = None  # look the bucket up again next time (it may have been lost and remade)
            raise StoreUnavailable(f"JetStream did not acknowledge a write: {exc!r}") from exc

    async def _bucket(self) -> KeyValue:
        async with self._lock:
            if self._kv is None:
                settings = self.store.settings
                try:
                    try:
                        self._kv = await self._js.key_value(settings.health_bucket)
                    except BucketNotFoundError:
                        self._kv = await self._js.create_key_value(
                            KeyValueConfig(
                                bucket=settings.health_bucket,
                                history=1,
                                ttl=HEARTBEAT_TTL_S,
                                storage=StorageType.FILE,  # survives a broker restart, like the stream
                                replicas=settings.replicas,
                            )
                        )
                except Exception as exc:
                    raise StoreUnavailable(f"health bucket {settings.health_bucket}: {exc!r}") from exc
            return self._kv
