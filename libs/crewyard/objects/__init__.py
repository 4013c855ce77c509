"""Object stores for crew sources and artifacts: the NATS object store by default, or any
S3-protocol service (MinIO) — both behind the same :class:`ObjectStore` protocol."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._base import ObjectCorrupt, ObjectNotFound, ObjectStore, ObjectStoreError
from ._nats import NatsObjectStore
from ._s3 import S3ObjectStore

if TYPE_CHECKING:
    from nats.aio.client import Client

    from crewyard.settings import Settings

__all__ = [
    "NatsObjectStore",
    "ObjectCorrupt",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectStoreError",
    "S3ObjectStore",
    "open_store",
]


def open_store(settings: Settings, nc: Client) -> ObjectStore:
    """The configured store: S3 when ``CREWYARD_S3_ENDPOINT`` is set, else the NATS object store."""
    if settings.s3_endpoint:
        return S3ObjectStore(
            settings.s3_endpoint,
            settings.s3_access_key or "",
            settings.s3_secret_key or "",
            settings.s3_bucket,
            secure=settings.s3_secure,
        )
    return NatsObjectStore(
        nc, settings.stream.object_bucket, settings.stream.replicas, read_timeout=settings.store_timeout_s
    )
