"""Objects in a NATS JetStream object store bucket (the default: nothing extra to run).

Reads fail within seconds when JetStream cannot serve them (a cluster without quorum, a broker
restarting): their requests have a short timeout of their own, and an object's chunks are read
here, with a limit on the wait for each next chunk, rather than by nats-py's ``get``, which waits
forever for a chunk that does not come. Writes keep a longer timeout: a chunk's acknowledgement
may be slow on a loaded machine without anything being wrong.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import ObjectStoreConfig, StorageType
from nats.js.errors import BucketNotFoundError, NotFoundError, ObjectNotFoundError
from nats.js.object_store import ObjectStore as _NatsObjectStore

from ._base import ObjectCorrupt, ObjectNotFound, ObjectStoreError


class NatsObjectStore:
    def __init__(
        self,
        nc: Client,
        bucket: str,
        replicas: int = 1,
        *,
        read_timeout: float = 5.0,
        chunk_wait_s: float = 10.0,
    ) -> None:
        self._js = nc.jetstream(timeout=30.0)
        self._reads = nc.jetstream(timeout=read_timeout)
        self._bucket = bucket
        self._replicas = replicas
        self._chunk_wait_s = chunk_wait_s
        self._obs: _NatsObjectStore | None = None
        self._reader: _NatsObjectStore | None = None
        self._lock = asyncio.Lock()

    async def _store(self) -> _NatsObjectStore:
        async with self._lock:
            if self._obs is None:
                try:
                    try:
                        await self._reads.object_store(self._bucket)
                        self._obs = _NatsObjectStore(
                            name=self._bucket, stream=f"OBJ_{self._bucket}", js=self._js
                        )
                    except (BucketNotFoundError, NotFoundError):
                        self._obs = await self._js.create_object_store(
                            self._bucket,
                            ObjectStoreConfig(storage=StorageType.FILE, replicas=self._replicas),
                        )
                except Exception as exc:
                    raise ObjectStoreError(f"object store {self._bucket} unavailable: {exc!r}") from exc
                self._reader = _NatsObjectStore(
                    name=self._bucket, stream=f"OBJ_{self._bucket}", js=self._reads
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
        parts: list[bytes] = []

        async def keep(chunk: bytes) -> None:
            parts.append(chunk)

        await self._read(name, keep)
        return b"".join(parts)

    async def get_file(self, name: str, path: Path) -> None:
        tmp = path.with_name(path.name + ".part")
        try:
            with tmp.open("wb") as fh:

                async def write(chunk: bytes) -> None:
                    await asyncio.to_thread(fh.write, chunk)

                await self._read(name, write)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        tmp.replace(path)

    async def exists(self, name: str) -> bool:
        try:
            await self._info(name)
        except ObjectNotFound:
            return False
        return True

    async def stream(self, name: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The object's chunks fetched one at a time (a get of the next chunk message per step, each
        within the read timeout), so a slow reader holds one chunk, not the object; chunks before
        ``start`` are skipped, the one holding it is cut."""
        nuid, size, _digest = await self._info(name)
        stop = size if end is None else min(end, size)
        if start >= stop:
            return
        subject, stream = f"$O.{self._bucket}.C.{nuid}", f"OBJ_{self._bucket}"
        seq, offset = 1, 0
        while offset < stop:
            try:
                msg = await self._reads.get_msg(stream, seq=seq, subject=subject, next=True)
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

    async def _info(self, name: str) -> tuple[str, int, str]:
        """The object's chunk id, size and digest (from the bucket's leader)."""
        await self._store()
        assert self._reader is not None
        try:
            info = await self._reader.get_info(name)
        except (ObjectNotFoundError, NotFoundError) as exc:
            raise ObjectNotFound(name) from exc
        except Exception as exc:
            raise ObjectStoreError(f"cannot read {name}: {exc!r}") from exc
        if not info.nuid or (info.options is not None and info.options.link is not None):
            raise ObjectStoreError(f"cannot read {name}: not a plain object")
        return info.nuid, int(info.size or 0), str(info.digest or "")

    async def _read(self, name: str, sink: Callable[[bytes], Awaitable[None]]) -> None:
        """Every chunk of ``name`` into ``sink``, in order, checked against the stored digest."""
        nuid, size, digest = await self._info(name)
        if size == 0:
            return
        try:
            sub = await self._reads.subscribe(f"$O.{self._bucket}.C.{nuid}", ordered_consumer=True)
        except Exception as exc:
            raise ObjectStoreError(f"cannot read {name}: {exc!r}") from exc
        sha = hashlib.sha256()
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=self._chunk_wait_s)
                except (NatsTimeout, TimeoutError) as exc:
                    raise ObjectStoreError(
                        f"cannot read {name}: no data for {self._chunk_wait_s:g} s (JetStream unavailable?)"
                    ) from exc
                await sink(msg.data)
                sha.update(msg.data)
                if msg.metadata.num_pending == 0:
                    break
        finally:
            with contextlib.suppress(Exception):  # the connection may be gone: nothing left to clean
                await sub.unsubscribe()
        expected = digest.split("=", 1)[-1]
        if base64.urlsafe_b64encode(sha.digest()).decode().rstrip("=") != expected.rstrip("="):
            raise ObjectCorrupt(f"cannot read {name}: content does not match its digest")
