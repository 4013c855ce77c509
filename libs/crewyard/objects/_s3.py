"""Objects in an S3-protocol bucket (MinIO, or any S3 service) through the ``minio`` SDK.

For when sources and artifacts should live outside the NATS cluster. The SDK is synchronous, so
every call runs in a thread, never on the event loop; its errors become ``ObjectStoreError``.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ._base import ObjectNotFound, ObjectStoreError


class S3ObjectStore:
    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        *,
        secure: bool = True,
        region: str | None = None,
    ) -> None:
        from minio import Minio  # imported here: only deployments that use S3 need the SDK

        self._client = Minio(
            endpoint, access_key=access_key, secret_key=secret_key, secure=secure, region=region
        )
        self._bucket = bucket
        self._ready = False
        self._lock = asyncio.Lock()

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from minio.error import MinioException, S3Error

        async with self._lock:
            if not self._ready:
                try:
                    if not await asyncio.to_thread(self._client.bucket_exists, self._bucket):
                        await asyncio.to_thread(self._client.make_bucket, self._bucket)
                except (MinioException, OSError, ValueError) as exc:
                    raise ObjectStoreError(f"S3 bucket {self._bucket} unavailable: {exc}") from exc
                self._ready = True
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject"):
                raise ObjectNotFound(str(args[1] if len(args) > 1 else "")) from exc
            raise ObjectStoreError(f"S3: {exc.code}: {exc.message}") from exc
        except (MinioException, OSError, ValueError) as exc:
            raise ObjectStoreError(f"S3: {exc}") from exc

    async def put_file(self, name: str, path: Path) -> int:
        await self._call(self._client.fput_object, self._bucket, name, str(path))
        info = await self._call(self._client.stat_object, self._bucket, name)
        return int(info.size or 0)

    async def put_bytes(self, name: str, data: bytes) -> int:
        await self._call(self._client.put_object, self._bucket, name, io.BytesIO(data), len(data))
        return len(data)

    async def get_bytes(self, name: str) -> bytes:
        def read() -> bytes:
            response = self._client.get_object(self._bucket, name)
            try:
                return bytes(response.read())
            finally:
                response.close()
                response.release_conn()

        data: bytes = await self._call(read)
        return data

    async def get_file(self, name: str, path: Path) -> None:
        tmp = path.with_name(path.name + ".part")
        try:
            await self._call(self._client.fget_object, self._bucket, name, str(tmp))
        except ObjectStoreError:
            tmp.unlink(missing_ok=True)
            raise
        tmp.replace(path)

    async def exists(self, name: str) -> bool:
        try:
            await self._call(self._client.stat_object, self._bucket, name)
        except ObjectNotFound:
            return False
        return True

    async def stream(self, name: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """A ranged GET read in 64 KiB pieces, each in a thread (the SDK is synchronous)."""
        length = 0 if end is None else max(end - start, 0)
        if end is not None and length == 0:
            return
        response = await self._call(self._client.get_object, self._bucket, name, offset=start, length=length)
        try:
            pieces = response.stream(64 * 1024)
            while True:
                piece = await asyncio.to_thread(next, pieces, None)
                if piece is None:
                    return
                yield bytes(piece)
        except Exception as exc:
            raise ObjectStoreError(f"S3: cannot read {name}: {exc}") from exc
        finally:
            response.close()
            response.release_conn()
