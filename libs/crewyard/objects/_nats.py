"""Objects in a NATS JetStream object store bucket (the default: nothing extra to run)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from nats.aio.client import Client
from nats.js.api import ObjectStoreConfig, StorageType
from nats.js.errors import BucketNotFoundError, NotFoundError, ObjectNotFoundError
from nats.js.object_store import ObjectStore as _NatsObjectStore

from ._base import ObjectNotFound, ObjectStoreError


class NatsObjectStore:
    def __init__(self, nc: Client, bucket: str, replicas: int = 1) -> None:
        self._js = nc.jetstream(timeout=30.0)
        self._bucket = bucket
        self._replicas = replicas
        self._obs: _NatsObjectStore | None = None
        self._lock = asyncio.Lock()

    async def _store(self) -> _NatsObjectStore:
        async with self._lock:
            if self._obs is None:
                try:
                    self._obs = await self._js.object_store(self._bucket)
                except (BucketNotFoundError, NotFoundError):
                    self._obs = await self._js.create_object_store(
                        self._bucket,
                        ObjectStoreConfig(storage=StorageType.FILE, replicas=self._replicas),
                    )
            return self._obs

    async def put_file(self, name: str, path: Path) -> int:
        obs = await self._store()
        try:
            with path.open("rb") as fh:
                info = await obs.put(name, fh)
        except Exception as exc:
            raise ObjectStoreError(f"cannot store {name}: {exc!r}") from exc
        return int(info.size or 0)

    async def put_bytes(self, name: str, data: bytes) -> int:
        obs = await self._store()
        try:
            info = await obs.put(name, data)
        except Exception as exc:
            raise ObjectStoreError(f"cannot store {name}: {exc!r}") from exc
        return int(info.size or 0)

    async def get_bytes(self, name: str) -> bytes:
        obs = await self._store()
        try:
            result = await obs.get(name)
        except (ObjectNotFoundError, NotFoundError) as exc:
            raise ObjectNotFound(name) from exc
        except Exception as exc:
            raise ObjectStoreError(f"cannot read {name}: {exc!r}") from exc
        return bytes(result.data or b"")

    async def get_file(self, name: str, path: Path) -> None:
        obs = await self._store()
        tmp = path.with_name(path.name + ".part")
        try:
            with tmp.open("wb") as fh:
                await obs.get(name, writeinto=fh)
        except (ObjectNotFoundError, NotFoundError) as exc:
            tmp.unlink(missing_ok=True)
            raise ObjectNotFound(name) from exc
        except Exception as exc:
            tmp.unlink(missing_ok=True)
            raise ObjectStoreError(f"cannot read {name}: {exc!r}") from exc
        tmp.replace(path)

    async def exists(self, name: str) -> bool:
        obs = await self._store()
        try:
            await obs.get_info(name)
        except (ObjectNotFoundError, NotFoundError):
            return False
        return True

    async def stream(self, name: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The object's chunks fetched one at a time (a direct get of the next chunk message per
        step), so a slow reader holds one chunk, not the object; chunks before ``start`` are
        skipped, the one holding it is cut."""
        obs = await self._store()
        try:
            info = await obs.get_info(name)
        except (ObjectNotFoundError, NotFoundError) as exc:
            raise ObjectNotFound(name) from exc
        except Exception as exc:
            raise ObjectStoreError(f"cannot read {name}: {exc!r}") from exc
        size = int(info.size or 0)
        stop = size if end is None else min(end, size)
        if not info.nuid or start >= stop:
            return
        subject, stream = f"$O.{self._bucket}.C.{info.nuid}", f"OBJ_{self._bucket}"
        seq, offset = 1, 0
        while offset < stop:
            try:
                msg = await self._js.get_msg(stream, seq=seq, subject=subject, next=True)
            except Exception as exc:
                raise ObjectStoreError(f"cannot read {name}: {exc!r}") from exc
            data = msg.data or b""
            if not data:
                raise ObjectStoreError(f"cannot read {name}: a chunk is missing")
            seq = int(msg.seq or seq) + 1
            lo, hi = max(start - offset, 0), min(stop - offset, len(data))
            offset += len(data)
            if lo < hi:
                yield data[lo:hi]
